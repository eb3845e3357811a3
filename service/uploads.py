"""Reading ``/align`` request bodies: multipart (a file field) or JSON (base64), within limits.

The body is read with a byte limit before any parsing (413 beyond it), then
parsed into the encoded image and the optional boxes. Anything else gets a
``ServiceError`` naming what was expected.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from pydantic import ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from service.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    ClientClosedError,
    EmptyImageError,
    ImageTooLargeError,
    InvalidBoxesError,
    InvalidRequestError,
    MalformedBodyError,
    UnsupportedMediaTypeError,
)
from service.schemas import BOXES_ADAPTER, AlignJsonRequest, Box

MULTIPART = "multipart/form-data"
JSON = "application/json"
ACCEPTED_MEDIA_TYPES = (MULTIPART, JSON)
FIELDS = ("image", "boxes")
# Room for the boxes and the multipart or JSON framing on top of the image itself.
FIELD_ALLOWANCE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Upload:
    image: bytes  # the encoded image file
    boxes: list[Box] | None  # None: the client sent no boxes


def media_type(headers: Mapping[str, str]) -> str:
    """The request's media type, if it is one ``/align`` accepts (else 415)."""
    given = headers.get("content-type", "")
    media = given.split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {given or '(none)'!r} is not accepted; send {MULTIPART} (a file field "
            f"'image', an optional field 'boxes') or {JSON} ({{\"image\": base64, \"boxes\": ...}})"
        )
    return media


def body_limit(media: str, max_image_bytes: int) -> int:
    """The largest body accepted for a media type: the image (base64 for JSON) plus fields."""
    encoded = 4 * -(-max_image_bytes // 3) if media == JSON else max_image_bytes
    return encoded + FIELD_ALLOWANCE_BYTES


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, or ``BodyTooLargeError`` as soon as it passes ``limit`` bytes,
    ``BodyTimeoutError`` if it has not all come within ``timeout_s``, ``ClientClosedError`` if
    the client goes away."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(
            f"the request body is {int(declared)} bytes; the limit is {limit} bytes (the image "
            "limit DAN_MAX_IMAGE_BYTES, base64 included, plus room for the boxes)"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError(f"the request body passed the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        expected = f" of {declared}" if declared.isdigit() else ""
        raise BodyTimeoutError(
            f"the request body did not arrive within {timeout_s * 1000:g} ms "
            f"(DAN_BODY_TIMEOUT_MS): {size}{expected} bytes came"
        ) from None
    except ClientDisconnect:
        raise ClientClosedError(
            f"the client closed the connection after {size} bytes of the request body"
        ) from None
    return b"".join(chunks)


def parse_json(body: bytes, max_image_bytes: int) -> Upload:
    """A JSON body -> the image bytes and boxes (CPU-heavy for big images: run it off the loop)."""
    try:
        request = AlignJsonRequest.model_validate_json(body)
    except ValidationError as e:
        raise _field_error(e) from None
    return Upload(decode_base64(request.image, max_image_bytes), request.boxes)


def decode_base64(text: str, max_image_bytes: int) -> bytes:
    """The bytes of a base64 image (whitespace and a data-URL prefix allowed)."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise InvalidRequestError(
                f"image: expected a base64 data URL, got a {header!r} data URL"
            )
    text = "".join(text.split())
    if not text:
        raise EmptyImageError("the image is empty (no base64 data)")
    if len(text) // 4 * 3 > max_image_bytes + 2:
        raise ImageTooLargeError(
            f"the image is about {len(text) // 4 * 3} bytes; the limit is {max_image_bytes} bytes "
            "(DAN_MAX_IMAGE_BYTES)"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidRequestError(
            f"image: expected base64 data, got invalid base64 ({e})"
        ) from None


def multipart_boundary(headers: Headers) -> bytes:
    """The boundary parameter of a multipart/form-data Content-Type (else ``malformed_body``)."""
    _, params = parse_options_header(headers.get("content-type", ""))
    boundary = params.get(b"boundary", b"")
    if not boundary:
        raise MalformedBodyError("the multipart/form-data Content-Type has no boundary parameter")
    return boundary


def check_complete(body: bytes, boundary: bytes) -> None:
    """``malformed_body`` unless the multipart body ends with its close delimiter
    (``--BOUNDARY--``, an epilogue may follow): a body cut short loses fields silently."""
    close = b"--" + boundary + b"--"
    at = body.rfind(close)
    if at < 0 or (at > 0 and body[at - 2 : at] != b"\r\n"):
        raise MalformedBodyError(
            f"the multipart body ({len(body)} bytes) is cut short: it does not end with its "
            f"closing boundary --{boundary.decode('latin-1')}--"
        )


async def parse_multipart(headers: Headers, body: bytes, max_image_bytes: int) -> Upload:
    """A multipart/form-data body -> the image bytes (file field ``image``) and boxes."""
    check_complete(body, multipart_boundary(headers))

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        headers,
        replay(),
        max_files=1,
        max_fields=1,
        max_part_size=FIELD_ALLOWANCE_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise MalformedBodyError(f"the multipart body cannot be parsed: {e.message}") from None
    try:
        unknown = sorted(set(form.keys()) - set(FIELDS))
        if unknown:
            raise InvalidRequestError(
                f"unexpected field(s) {', '.join(unknown)}; expected 'image' and optionally 'boxes'"
            )
        image = form.get("image")
        if image is None:
            raise InvalidRequestError(
                "the multipart body has no 'image' field; send the image file in it"
            )
        if not isinstance(image, UploadFile):
            raise InvalidRequestError(
                "'image' must be a file part (with a filename, as curl -F image=@face.jpg sends it), "
                "got a text field"
            )
        if image.size is not None and image.size > max_image_bytes:
            raise ImageTooLargeError(
                f"the image is {image.size} bytes; the limit is {max_image_bytes} bytes "
                "(DAN_MAX_IMAGE_BYTES)"
            )
        data = await image.read()
        boxes_field = form.get("boxes")
        if boxes_field is None:
            boxes = None
        elif isinstance(boxes_field, str):
            boxes = parse_boxes(boxes_field) if boxes_field.strip() else None  # null: None
        else:
            raise InvalidRequestError("'boxes' must be a text field holding JSON, got a file part")
    finally:
        await form.close()
    return Upload(data, boxes)


def parse_boxes(text: str) -> list[Box] | None:
    """The ``boxes`` form field: a JSON list of [x_min, y_min, x_max, y_max], or ``null`` (no
    boxes, as in a JSON body)."""
    try:
        return BOXES_ADAPTER.validate_json(text)
    except ValidationError as e:
        raise InvalidBoxesError(
            f"boxes: expected a JSON list of [x_min, y_min, x_max, y_max] boxes: {_summary(e)}"
        ) from None


def _field_error(
    error: ValidationError,
) -> InvalidRequestError | InvalidBoxesError | MalformedBodyError:
    if any(e["type"] == "json_invalid" for e in error.errors()):
        return MalformedBodyError(f"the body is not valid JSON: {_summary(error)}")
    if all(e["loc"] and e["loc"][0] == "boxes" for e in error.errors()):
        return InvalidBoxesError(
            f"expected boxes as a list of [x_min, y_min, x_max, y_max]: {_summary(error)}"
        )
    return InvalidRequestError(
        f'expected a JSON object {{"image": base64 string, "boxes": optional list}}: '
        f"{_summary(error)}"
    )


def _summary(error: ValidationError, limit: int = 3) -> str:
    parts = []
    for e in error.errors()[:limit]:
        where = ".".join(str(part) for part in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
