"""The service's exception types and the one table that maps them to HTTP status codes.

Every error a client can cause or meet is a ``ServiceError`` with a stable
``reason`` (the ``error`` field of the JSON answer and the label of the errors
metric) and a message saying what was expected and what came. The batching
queue (``service.batching``, a library without HTTP) has its own exceptions;
``BATCHING_ERRORS`` here is the one place that says which answer each gets. A
``StartupError`` is not an HTTP error: it stops start-up.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from service import batching


class StartupError(RuntimeError):
    """The service cannot start; the message says what was expected and what was found."""


class ModelError(StartupError):
    """The model file cannot be served (missing or unknown metadata, wrong inputs or outputs)."""


class ProviderError(StartupError):
    """The execution provider asked for is not available."""


class DetectorError(StartupError):
    """The face detector's weights are not installed or cannot be loaded."""


class ServiceError(Exception):
    """An error answered to the client; subclasses name the reason."""

    reason: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# 400: the upload is not a usable image or the body is not well-formed.
class EmptyImageError(ServiceError):
    reason = "empty_image"


class NotAnImageError(ServiceError):
    reason = "not_an_image"


class CorruptImageError(ServiceError):
    reason = "corrupt_image"


class MalformedBodyError(ServiceError):
    reason = "malformed_body"


# 408: the body did not arrive in time (DAN_BODY_TIMEOUT_MS).
class BodyTimeoutError(ServiceError):
    reason = "body_timeout"


# 413: too big.
class BodyTooLargeError(ServiceError):
    reason = "body_too_large"


class ImageTooLargeError(ServiceError):
    reason = "image_too_large"


class TooManyPixelsError(ServiceError):
    reason = "too_many_pixels"


# 415: a kind of content the service does not take.
class UnsupportedMediaTypeError(ServiceError):
    reason = "unsupported_media_type"


class UnsupportedImageError(ServiceError):
    reason = "unsupported_image"


# 422: well-formed but invalid fields.
class InvalidRequestError(ServiceError):
    reason = "invalid_request"


class InvalidBoxesError(ServiceError):
    reason = "invalid_boxes"


class TooManyFacesError(ServiceError):
    reason = "too_many_faces"


# 401: an API key is required (DAN_API_KEYS, DAN_METRICS_API_KEYS) and none valid was sent.
class UnauthorizedError(ServiceError):
    reason = "unauthorized"


# 404 / 405: routing (raised by the framework, answered in our format).
class NotFoundError(ServiceError):
    reason = "not_found"


class MethodNotAllowedError(ServiceError):
    reason = "method_not_allowed"


# 499: the client closed the connection before its answer (nginx's code); nothing is sent.
class ClientClosedError(ServiceError):
    reason = "client_closed"


# 500: our side failed.
class InferenceFailedError(ServiceError):
    reason = "inference_failed"


class InternalError(ServiceError):
    reason = "internal_error"


# 503: try again later (answered with Retry-After).
class QueueFullError(ServiceError):
    """The inference queue has no room for the request's faces (DAN_MAX_QUEUE_SIZE)."""

    reason = "queue_full"


class QueueWaitTooLongError(ServiceError):
    """The inference ahead would keep the request's faces waiting too long
    (DAN_MAX_QUEUE_WAIT_MS, or past the request's deadline)."""

    reason = "queue_wait_too_long"


class OverloadedError(ServiceError):
    reason = "overloaded"


class NotReadyError(ServiceError):
    reason = "not_ready"


class ShuttingDownError(ServiceError):
    reason = "shutting_down"


# 504: the request's deadline passed.
class DeadlineExceededError(ServiceError):
    reason = "deadline_exceeded"


HTTP_STATUS: dict[type[ServiceError], int] = {
    EmptyImageError: 400,
    NotAnImageError: 400,
    CorruptImageError: 400,
    MalformedBodyError: 400,
    UnauthorizedError: 401,
    NotFoundError: 404,
    BodyTimeoutError: 408,
    MethodNotAllowedError: 405,
    BodyTooLargeError: 413,
    ImageTooLargeError: 413,
    TooManyPixelsError: 413,
    UnsupportedMediaTypeError: 415,
    UnsupportedImageError: 415,
    InvalidRequestError: 422,
    InvalidBoxesError: 422,
    TooManyFacesError: 422,
    ClientClosedError: 499,
    InferenceFailedError: 500,
    InternalError: 500,
    QueueFullError: 503,
    QueueWaitTooLongError: 503,
    OverloadedError: 503,
    NotReadyError: 503,
    ShuttingDownError: 503,
    DeadlineExceededError: 504,
}

# Answers with these statuses carry a Retry-After header.
RETRY_LATER_STATUSES = frozenset({503})
# Statuses no client reads (it has gone): left out of the OpenAPI document.
UNSENT_STATUSES = frozenset({499})

# What each failure of the batching queue is answered as, and the words before its message.
BATCHING_ERRORS: dict[type[batching.BatchingError], tuple[type[ServiceError], str]] = {
    batching.ItemFailedError: (InferenceFailedError, "inference failed for this face"),
    batching.BatchFailedError: (InferenceFailedError, "inference failed"),
    batching.ExpiredError: (
        DeadlineExceededError,
        "the request's deadline passed before this face was run",
    ),
    batching.DroppedError: (ShuttingDownError, "the service shut down before this face was run"),
    batching.ClosedError: (ShuttingDownError, "the service is shutting down"),
}


def from_batching(error: batching.BatchingError) -> ServiceError:
    """The answer to a failure of the batching queue (``internal_error`` for an unknown one)."""
    for cls, (answer, words) in BATCHING_ERRORS.items():
        if isinstance(error, cls):
            return answer(f"{words}: {error}")
    return InternalError(f"the batching queue failed: {error}")


def http_status(error: ServiceError) -> int:
    """The HTTP status code of an error (500 for a type missing from the table)."""
    status = HTTP_STATUS.get(type(error))
    if status is None:
        status = next((s for cls, s in HTTP_STATUS.items() if isinstance(error, cls)), 500)
    return status


def log_level(error: ServiceError) -> int:
    """How an answered error is logged. Every answer is counted in the metrics
    (``dan_errors_total{reason}``), so what a client can cause at will (bad input, refusals,
    retry-later) is DEBUG; a client gone is INFO; our own failures (500, 504) are WARNING.
    Lines above DEBUG are rate-limited per reason by the caller (``service.log_limit``)."""
    if isinstance(error, ClientClosedError):
        return logging.INFO
    status = http_status(error)
    if status >= 500 and status not in RETRY_LATER_STATUSES:
        return logging.WARNING
    return logging.DEBUG


def reasons_by_status() -> dict[int, list[str]]:
    """The reasons each status code can carry (for the OpenAPI description)."""
    table: dict[int, list[str]] = {}
    for cls, status in HTTP_STATUS.items():
        table.setdefault(status, []).append(cls.reason)
    return table
