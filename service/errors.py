"""The service's exception types and the one table that maps them to HTTP status codes.

Every error a client can cause or meet is a ``ServiceError`` with a stable
``reason`` (the ``error`` field of the JSON answer and the label of the errors
metric) and a message saying what was expected and what came. A
``StartupError`` is not an HTTP error: it stops start-up.
"""

from __future__ import annotations

from typing import ClassVar


class StartupError(RuntimeError):
    """The service cannot start; the message says what was expected and what was found."""


class ModelError(StartupError):
    """The model file cannot be served (missing or unknown metadata, wrong inputs or outputs)."""


class ProviderError(StartupError):
    """The execution provider asked for is not available."""


class ServiceError(Exception):
    """An error answered to the client; subclasses name the reason."""

    reason: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# 400: the upload is not a usable image or the body is not well-formed.
class EmptyImage(ServiceError):
    reason = "empty_image"


class NotAnImage(ServiceError):
    reason = "not_an_image"


class CorruptImage(ServiceError):
    reason = "corrupt_image"


class MalformedBody(ServiceError):
    reason = "malformed_body"


# 413: too big.
class BodyTooLarge(ServiceError):
    reason = "body_too_large"


class ImageTooLarge(ServiceError):
    reason = "image_too_large"


class TooManyPixels(ServiceError):
    reason = "too_many_pixels"


# 415: a kind of content the service does not take.
class UnsupportedMediaType(ServiceError):
    reason = "unsupported_media_type"


class UnsupportedImage(ServiceError):
    reason = "unsupported_image"


# 422: well-formed but invalid fields.
class InvalidRequest(ServiceError):
    reason = "invalid_request"


class InvalidBoxes(ServiceError):
    reason = "invalid_boxes"


class TooManyFaces(ServiceError):
    reason = "too_many_faces"


# 404 / 405: routing (raised by the framework, answered in our format).
class NotFound(ServiceError):
    reason = "not_found"


class MethodNotAllowed(ServiceError):
    reason = "method_not_allowed"


# 500: our side failed.
class InferenceFailed(ServiceError):
    reason = "inference_failed"


class InternalError(ServiceError):
    reason = "internal_error"


# 503: try again later (answered with Retry-After).
class QueueFull(ServiceError):
    reason = "queue_full"


class Overloaded(ServiceError):
    reason = "overloaded"


class NotReady(ServiceError):
    reason = "not_ready"


class ShuttingDown(ServiceError):
    reason = "shutting_down"


# 504: the request's deadline passed.
class DeadlineExceeded(ServiceError):
    reason = "deadline_exceeded"


HTTP_STATUS: dict[type[ServiceError], int] = {
    EmptyImage: 400,
    NotAnImage: 400,
    CorruptImage: 400,
    MalformedBody: 400,
    NotFound: 404,
    MethodNotAllowed: 405,
    BodyTooLarge: 413,
    ImageTooLarge: 413,
    TooManyPixels: 413,
    UnsupportedMediaType: 415,
    UnsupportedImage: 415,
    InvalidRequest: 422,
    InvalidBoxes: 422,
    TooManyFaces: 422,
    InferenceFailed: 500,
    InternalError: 500,
    QueueFull: 503,
    Overloaded: 503,
    NotReady: 503,
    ShuttingDown: 503,
    DeadlineExceeded: 504,
}

# Answers with these statuses carry a Retry-After header.
RETRY_LATER_STATUSES = frozenset({503})


def http_status(error: ServiceError) -> int:
    """The HTTP status code of an error (500 for a type missing from the table)."""
    status = HTTP_STATUS.get(type(error))
    if status is None:
        status = next((s for cls, s in HTTP_STATUS.items() if isinstance(error, cls)), 500)
    return status


def reasons_by_status() -> dict[int, list[str]]:
    """The reasons each status code can carry (for the OpenAPI description)."""
    table: dict[int, list[str]] = {}
    for cls, status in HTTP_STATUS.items():
        table.setdefault(status, []).append(cls.reason)
    return table
