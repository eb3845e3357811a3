"""service.errors: one table gives every error its status; reasons are unique and stable; each
failure of the batching queue has one answer."""

from __future__ import annotations

import inspect

import service.batching as batching
import service.errors as errors


def service_errors() -> list[type[errors.ServiceError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ServiceError) and cls is not errors.ServiceError
    ]


def test_every_error_type_has_a_status_and_a_unique_reason() -> None:
    types = service_errors()
    assert set(types) == set(errors.HTTP_STATUS)
    reasons = [cls.reason for cls in types]
    assert len(set(reasons)) == len(reasons)


def test_statuses_of_the_issue() -> None:
    status = errors.http_status
    assert status(errors.ImageTooLargeError("x")) == 413
    assert status(errors.TooManyPixelsError("x")) == 413
    assert status(errors.UnsupportedMediaTypeError("x")) == 415
    assert status(errors.InvalidBoxesError("x")) == 422
    assert status(errors.TooManyFacesError("x")) == 422
    assert status(errors.InferenceFailedError("x")) == 500
    assert status(errors.QueueFullError("x")) == 503
    assert status(errors.DeadlineExceededError("x")) == 504
    assert 503 in errors.RETRY_LATER_STATUSES


def test_an_unlisted_subclass_gets_its_parents_status() -> None:
    class Special(errors.QueueFullError):
        pass

    assert errors.http_status(Special("x")) == 503
    assert errors.http_status(errors.ServiceError("x")) == 500


def test_a_full_queue_and_too_long_a_wait_are_different_reasons_both_retry_later() -> None:
    full, too_long = errors.QueueFullError("x"), errors.QueueWaitTooLongError("x")
    assert (full.reason, too_long.reason) == ("queue_full", "queue_wait_too_long")
    assert errors.http_status(full) == errors.http_status(too_long) == 503


def test_each_failure_of_the_batching_queue_has_one_answer() -> None:
    failures = {
        cls
        for _, cls in inspect.getmembers(batching, inspect.isclass)
        if issubclass(cls, batching.BatchingError) and cls is not batching.BatchingError
    }
    assert failures == set(errors.BATCHING_ERRORS)
    expected = {
        batching.ItemFailedError: (500, "inference_failed"),
        batching.BatchFailedError: (500, "inference_failed"),
        batching.ExpiredError: (504, "deadline_exceeded"),
        batching.DroppedError: (503, "shutting_down"),
        batching.ClosedError: (503, "shutting_down"),
    }
    for cls, (status, reason) in expected.items():
        answer = errors.from_batching(cls("what happened"))
        assert (errors.http_status(answer), answer.reason) == (status, reason), cls
        assert answer.message.endswith(": what happened")
    one_face = errors.from_batching(batching.ItemFailedError("NaN"))
    assert one_face.message == "inference failed for this face: NaN"


def test_an_unknown_failure_of_the_batching_queue_is_an_internal_error() -> None:
    class Strange(batching.BatchingError):
        pass

    class Later(batching.ExpiredError):
        pass

    assert errors.from_batching(Strange("odd")).reason == "internal_error"
    assert errors.from_batching(Later("late")).reason == "deadline_exceeded"  # its parent's
