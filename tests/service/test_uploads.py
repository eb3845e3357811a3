"""service.uploads: media types, body limits, base64, JSON and multipart bodies."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from starlette.datastructures import Headers

from service.errors import (
    EmptyImageError,
    ImageTooLargeError,
    InvalidBoxesError,
    InvalidRequestError,
    MalformedBodyError,
    UnsupportedMediaTypeError,
)
from service.uploads import (
    FIELD_ALLOWANCE_BYTES,
    JSON,
    MULTIPART,
    Upload,
    body_limit,
    decode_base64,
    media_type,
    parse_json,
    parse_multipart,
)

IMAGE = bytes(range(256)) * 8  # parsing does not look inside the image


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("application/json", JSON),
        ("Application/JSON; charset=utf-8", JSON),
        ("multipart/form-data; boundary=xyz", MULTIPART),
    ],
)
def test_accepted_media_types(given: str, expected: str) -> None:
    assert media_type({"content-type": given}) == expected


@pytest.mark.parametrize(
    "given", ["text/plain", "image/jpeg", "application/x-www-form-urlencoded", ""]
)
def test_other_media_types_are_refused_saying_what_is_accepted(given: str) -> None:
    with pytest.raises(
        UnsupportedMediaTypeError, match=r"multipart/form-data .* or application/json"
    ):
        media_type({"content-type": given} if given else {})


def test_body_limit_leaves_room_for_base64_and_fields() -> None:
    assert body_limit(MULTIPART, 3000) == 3000 + FIELD_ALLOWANCE_BYTES
    assert body_limit(JSON, 3000) == 4000 + FIELD_ALLOWANCE_BYTES


def test_base64_plain_wrapped_and_data_url() -> None:
    text = base64.b64encode(IMAGE).decode()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64(text, 10_000) == IMAGE
    assert decode_base64(wrapped, 10_000) == IMAGE
    assert decode_base64("data:image/png;base64," + text, 10_000) == IMAGE


def test_bad_base64() -> None:
    with pytest.raises(InvalidRequestError, match="invalid base64"):
        decode_base64("abc$def=", 10_000)
    with pytest.raises(InvalidRequestError, match="base64 data URL"):
        decode_base64("data:image/png,abcd", 10_000)
    with pytest.raises(EmptyImageError):
        decode_base64("", 10_000)
    with pytest.raises(ImageTooLargeError, match="limit is 100 bytes"):
        decode_base64(base64.b64encode(IMAGE).decode(), 100)


def json_body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_json_body() -> None:
    image = base64.b64encode(IMAGE).decode()
    assert parse_json(json_body(image=image), 10_000) == Upload(IMAGE, None)
    upload = parse_json(json_body(image=image, boxes=[[1, 2, 30, 40.5]]), 10_000)
    assert upload.boxes == [(1.0, 2.0, 30.0, 40.5)]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"{not json", MalformedBodyError, "not valid JSON"),
        (json_body(boxes=[[1, 2, 3, 4]]), InvalidRequestError, "image: Field required"),
        (
            json_body(image="", extra=1),
            InvalidRequestError,
            "extra: Extra inputs are not permitted",
        ),
        (json_body(image=5), InvalidRequestError, "image"),
        (json_body(image="AAAA", boxes=[[1, 2, 3]]), InvalidBoxesError, "boxes.0"),
        (json_body(image="AAAA", boxes=[["1", 2, 3, 4]]), InvalidBoxesError, "valid number"),
        (json_body(image="AAAA", boxes={"x": 1}), InvalidBoxesError, "boxes"),
        (b'{"image": "AAAA", "boxes": [[1, 2, 3, NaN]]}', InvalidBoxesError, "finite"),
    ],
)
def test_bad_json_bodies(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_json(body, 10_000)


def multipart(**kwargs: object) -> tuple[Headers, bytes]:
    """A body as httpx encodes it (a real client's multipart encoder)."""
    request = httpx.Request("POST", "http://test/align", **kwargs)  # type: ignore[arg-type]
    return Headers({k.lower(): v for k, v in request.headers.items()}), request.read()


def parse(headers: Headers, body: bytes, limit: int = 10_000) -> Upload:
    return asyncio.run(parse_multipart(headers, body, limit))


def test_multipart_body() -> None:
    headers, body = multipart(files={"image": ("face.jpg", IMAGE, "image/jpeg")})
    assert parse(headers, body) == Upload(IMAGE, None)
    headers, body = multipart(
        files={"image": ("face.jpg", IMAGE, "image/jpeg")}, data={"boxes": "[[1, 2, 30, 40]]"}
    )
    assert parse(headers, body).boxes == [(1.0, 2.0, 30.0, 40.0)]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"files": {"boxes": (None, "[]")}}, InvalidRequestError, "no 'image' field"),
        ({"files": {"image": (None, "text")}}, InvalidRequestError, "must be a file part"),
        (
            {"files": {"image": ("a.jpg", IMAGE), "photo": ("b.jpg", IMAGE)}},
            MalformedBodyError,
            "Too many files",
        ),
        (
            {"files": {"image": ("a.jpg", IMAGE)}, "data": {"box": "[[1,2,3,4]]"}},
            InvalidRequestError,
            "unexpected field",
        ),
        (
            {"files": {"image": ("a.jpg", IMAGE)}, "data": {"boxes": "[[1,2,3,4]"}},
            InvalidBoxesError,
            "expected a JSON list",
        ),
    ],
)
def test_bad_multipart_bodies(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    headers, body = multipart(**kwargs)
    with pytest.raises(error, match=message):
        parse(headers, body)


def test_a_multipart_image_over_the_limit() -> None:
    headers, body = multipart(files={"image": ("a.jpg", IMAGE)})
    with pytest.raises(ImageTooLargeError, match="limit is 1000 bytes"):
        parse(headers, body, limit=1000)


def test_a_multipart_body_without_boundary() -> None:
    with pytest.raises(MalformedBodyError, match="no boundary"):
        parse(Headers({"content-type": "multipart/form-data"}), b"whatever")
