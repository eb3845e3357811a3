"""service.errors: one table gives every error its status; reasons are unique and stable."""

from __future__ import annotations

import inspect

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
