"""A coverage-guided fuzz target (atheris) for what a client's bytes reach first: image
decoding (``service.imaging``, the data-sufficiency check, the header probe) and the parsing of
``/align`` bodies (multipart and JSON, ``service.uploads``).

Every input must end in a decoded image or a ``ServiceError`` (a 4xx answer); anything else
(another exception, a crash, a hang past libFuzzer's -timeout) is a finding. The first byte
picks the target, the rest is the input. CI runs it for a few seconds on a copy of the corpus
(tests/fuzz/test_fuzz_uploads.py); by hand, for as long as you like, growing the corpus:

    .venv/bin/python tests/fuzz/fuzz_uploads.py tests/fuzz/corpus -max_total_time=600

(libFuzzer's options: -runs=N, -max_len=N, -timeout=S, -jobs=N; a finding is written to
./crash-*, to be replayed with ``python tests/fuzz/fuzz_uploads.py crash-...``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import warnings

import atheris

# The libraries first, uninstrumented (their Python is not what is fuzzed, and instrumenting
# it all makes start-up slow); then the service's own modules, instrumented for coverage.
import numpy  # noqa: F401
import PIL.Image  # noqa: F401
import pydantic  # noqa: F401
import python_multipart  # noqa: F401
import starlette.formparsers  # noqa: F401
from starlette.datastructures import Headers

import model.grayscale  # noqa: F401
import service.errors
import service.schemas

with atheris.instrument_imports(include=["service", "model"]):
    from service import image_data, imaging, uploads
ServiceError = service.errors.ServiceError

LIMITS = imaging.ImageLimits(max_bytes=1 << 20, max_pixels=4_000_000)
MAX_IMAGE_BYTES = 1 << 20
BOUNDARY = "dan-fuzz"
MULTIPART_HEADERS = Headers({"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
TARGETS = ("image", "multipart", "json")
LOOP = asyncio.new_event_loop()


def decode(data: bytes) -> None:
    size = imaging.header_size(data)
    if size is not None:
        for fmt in ("JPEG", "PNG"):
            with contextlib.suppress(ServiceError):
                image_data.check_data_suffices(data, fmt, *size)
    decoded = imaging.decode_image(data, LIMITS)
    assert decoded.gray.ndim == 2 and decoded.gray.dtype.name == "uint8"
    assert decoded.width * decoded.height <= LIMITS.max_pixels


def multipart(data: bytes) -> None:
    upload = LOOP.run_until_complete(
        uploads.parse_multipart(MULTIPART_HEADERS, data, MAX_IMAGE_BYTES)
    )
    assert len(upload.image) <= MAX_IMAGE_BYTES


def json_body(data: bytes) -> None:
    upload = uploads.parse_json(data, MAX_IMAGE_BYTES)
    assert len(upload.image) <= MAX_IMAGE_BYTES + 2


def test_one_input(raw: bytes) -> None:
    if not raw:
        return
    target, data = TARGETS[raw[0] % len(TARGETS)], raw[1:]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning and the like
            {"image": decode, "multipart": multipart, "json": json_body}[target](data)
    except ServiceError:
        pass  # a 4xx answer: what bad input must get


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
