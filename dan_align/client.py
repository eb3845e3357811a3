"""``Client`` and ``AsyncClient``: ``POST /align`` from Python, typed results, retries on 503.

    from dan_align import Client

    with Client("http://127.0.0.1:8000") as client:
        faces = client.align("photo.jpg").faces
        print(faces[0].landmarks.shape)  # (68, 2)

``align(image, boxes=None)`` takes a path, the bytes of an image file, a PIL
image or a numpy array (``dan_align.images``) and optional boxes
``[[x_min, y_min, x_max, y_max], ...]`` (a list or an ``(N, 4)`` array), and
returns an ``Alignment`` (``dan_align.results``). An error answer raises
``ServiceError`` with the service's ``error`` and ``detail``. A 503 (the
service is busy, starting or stopping) is retried up to ``retries`` times,
each after the answer's ``Retry-After`` (at most ``max_retry_wait_s``; without
the header, 0.5 s doubling), then raises ``ServiceUnavailableError``. With
``api_key`` every request carries ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np

from dan_align.closing import Closing
from dan_align.errors import (
    ConnectionFailedError,
    InputError,
    ResponseFormatError,
    ServiceError,
    ServiceUnavailableError,
)
from dan_align.images import ImageInput, encode_image
from dan_align.results import Alignment, parse_alignment

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT_S = 30.0
RETRIED_STATUSES = frozenset({503})
BACKOFF_FIRST_S = 0.5  # the wait before the first retry of a 503 without Retry-After
USER_AGENT = "dan-align-client/1"

Boxes = Sequence[Sequence[float]] | np.ndarray


class _Common:
    """What both clients share: the request's parts, the answer's reading, the retry rule."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout: float,
        retries: int,
        max_retry_wait_s: float,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = url.rstrip("/")
        self.retries = retries
        self.max_retry_wait_s = max_retry_wait_s
        self.timeout = timeout
        self.api_key = api_key  # also what a stream of the same service sends (dan_align.stream)
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def _parts(self, image: ImageInput, boxes: Boxes | None) -> dict[str, Any]:
        encoded = encode_image(image)
        parts: dict[str, Any] = {
            "files": {"image": (encoded.filename, encoded.data, encoded.content_type)}
        }
        if boxes is not None:
            parts["data"] = {"boxes": json.dumps(boxes_list(boxes))}
        return parts

    def _retry_wait(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None: no retry (not a 503, or none left)."""
        if response.status_code not in RETRIED_STATUSES or attempt >= self.retries:
            return None
        after = retry_after_s(response.headers.get("Retry-After"))
        wait = BACKOFF_FIRST_S * 2.0**attempt if after is None else after
        return min(wait, self.max_retry_wait_s)

    def _result(self, response: httpx.Response) -> Alignment:
        if response.status_code != 200:
            raise error_of(response)
        try:
            body = response.json()
        except ValueError as e:
            raise ResponseFormatError(
                f"the service at {self.url} answered 200 with a body that is not JSON"
            ) from e
        return parse_alignment(body)

    def _connection_failed(self, e: httpx.TransportError) -> ConnectionFailedError:
        cause = str(e) or type(e).__name__
        if isinstance(e, httpx.TimeoutException):
            cause = f"no answer within {self.timeout:g} s ({cause})"
        return ConnectionFailedError(self.url, cause)


class Client(_Common, Closing):
    """A synchronous client of one service; reuses its connections (close it, or use ``with``).

    ``transport`` and ``sleep`` replace httpx's transport and ``time.sleep`` (tests).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait_s: float = DEFAULT_MAX_RETRY_WAIT_S,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(url, api_key, timeout, retries, max_retry_wait_s)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
        )

    def align(self, image: ImageInput, boxes: Boxes | None = None) -> Alignment:
        """The landmarks of every face of ``image`` (of the faces in ``boxes`` when given)."""
        parts = self._parts(image, boxes)
        attempt = 0
        while True:
            try:
                response = self._http.post("/align", **parts)
            except httpx.TransportError as e:
                raise self._connection_failed(e) from e
            wait = self._retry_wait(response, attempt)
            if wait is None:
                return self._result(response)
            log.info("%s answered 503, retrying in %.2f s", self.url, wait)
            self._sleep(wait)
            attempt += 1

    def ready(self) -> bool:
        """True when the service answers ``/health/ready`` with 200 (loaded and warmed up)."""
        try:
            return self._http.get("/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self._http.close()


class AsyncClient(_Common):
    """The asyncio client: the same as ``Client`` with ``await``; close it or ``async with``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait_s: float = DEFAULT_MAX_RETRY_WAIT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, timeout, retries, max_retry_wait_s)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def align(self, image: ImageInput, boxes: Boxes | None = None) -> Alignment:
        """The landmarks of every face of ``image`` (of the faces in ``boxes`` when given)."""
        parts = self._parts(image, boxes)
        attempt = 0
        while True:
            try:
                response = await self._http.post("/align", **parts)
            except httpx.TransportError as e:
                raise self._connection_failed(e) from e
            wait = self._retry_wait(response, attempt)
            if wait is None:
                return self._result(response)
            log.info("%s answered 503, retrying in %.2f s", self.url, wait)
            await asyncio.sleep(wait)
            attempt += 1

    async def ready(self) -> bool:
        """True when the service answers ``/health/ready`` with 200 (loaded and warmed up)."""
        try:
            return (await self._http.get("/health/ready")).status_code == 200
        except httpx.TransportError:
            return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def boxes_list(boxes: Boxes) -> list[list[float]]:
    """``boxes`` as the JSON list the service takes, checked: N x 4 finite numbers."""
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"expected boxes [[x_min, y_min, x_max, y_max], ...]: {e}") from e
    if array.ndim == 1 and array.shape == (4,):
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(
            f"expected boxes [[x_min, y_min, x_max, y_max], ...], got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InputError("boxes must be finite numbers")
    return [[float(v) for v in row] for row in array]


def retry_after_s(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date), None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_of(response: httpx.Response) -> ServiceError:
    """The exception for an error answer, with the service's ``error`` and ``detail``."""
    status = response.status_code
    error, detail = f"http_{status}", response.text.strip()[:500] or response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error = body["error"]
        detail = str(body.get("detail", ""))
    kind = ServiceUnavailableError if status == 503 else ServiceError
    return kind(
        status, error, detail, retry_after_s=retry_after_s(response.headers.get("Retry-After"))
    )
