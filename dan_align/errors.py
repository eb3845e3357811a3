"""The client's exceptions: every one is a ``DanAlignError``.

An error answer of the service becomes a ``ServiceError`` carrying the
service's own words: ``error`` (its stable reason, e.g. ``not_an_image``) and
``detail`` (what it expected and what came), with the HTTP ``status``. A 503
that outlasted the client's retries is a ``ServiceUnavailableError``; a
service that cannot be reached at all is a ``ConnectionFailedError``. What
cannot be sent (an unreadable file, boxes of the wrong shape) is an
``InputError`` and an answer this client does not know a ``ResponseFormatError``,
both also ``ValueError``.
"""

from __future__ import annotations


class DanAlignError(Exception):
    """Base class of the client's errors."""


class InputError(DanAlignError, ValueError):
    """The image or boxes given to ``align`` cannot be sent (an unknown type, an unreadable
    file, boxes that are not ``[x_min, y_min, x_max, y_max]``)."""


class ResponseFormatError(DanAlignError, ValueError):
    """The service's answer is not the ``/align`` answer this client knows."""


class ConnectionFailedError(DanAlignError):
    """The service could not be reached (refused, timed out, name not resolved, ...)."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"could not reach the service at {url}: {cause}")
        self.url = url
        self.cause = cause


class ServiceError(DanAlignError):
    """The service answered with an error: ``status``, and its ``error`` and ``detail``."""

    def __init__(
        self, status: int, error: str, detail: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{error}: {detail} (HTTP {status})")
        self.status = status
        self.error = error
        self.detail = detail
        self.retry_after_s = retry_after_s


class ServiceUnavailableError(ServiceError):
    """503 (``queue_full``, ``overloaded``, ``not_ready``, ...) after the client's retries."""
