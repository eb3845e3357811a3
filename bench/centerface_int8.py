"""An int8 CenterFace for CPUs: static quantization of ``service/detectors/centerface.onnx``.

    python -m bench.centerface_int8 --data-root ../shared/data/300w

Writes ``service/detectors/centerface.int8.onnx``, which the service loads instead of the
float32 graph when it is there (``DAN_DETECTOR_PRECISION=auto``, the default; ``int8`` asks
for it, ``float32`` refuses it). The graph is the shipped one with its weight inputs removed
from the graph's inputs, its opset raised to 13 (per-channel quantization), its batch norms
folded (onnxruntime's basic optimisations), then quantized in QDQ form: int8 weights per
channel, uint8 activations, ranges by min/max over the detector inputs of TRAINING images
only: ``--composites`` canvases of training crops at 1920 x 1080 and ``--crops`` training
crops, each shrunk to the longer side the service uses (``--max-side``).

Then both graphs detect on the common-test crops and on composites of common-test crops at
1920 x 1080 (``bench.detectors``): recall at IoU >= 0.5 with the 300-W boxes at the service's
threshold, extra boxes, and their speed in turns; the report is printed and written beside
the file (``centerface.int8.json``). Needs the ``onnx`` package (the ``train`` extra).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bench.detectors import Scene, composites, score_scenes, single_scenes
from bench.samples import boxed_faces
from model.arrays import GrayImage
from service.detectors import centerface
from training.arguments import fraction, non_negative_int, positive_int
from training.dataset import SPLITS, read_gray
from training.paths import DEFAULT_DATA_ROOT, REPO_ROOT

log = logging.getLogger("bench.centerface_int8")

SOURCE = REPO_ROOT / "service" / "detectors" / centerface.WEIGHTS_FILE
OUTPUT = REPO_ROOT / "service" / "detectors" / centerface.INT8_WEIGHTS_FILE
FULL_HD = (1920, 1080)


def detector_input(gray: GrayImage, max_side: int) -> npt.NDArray[np.float32]:
    """The blob ``CenterFace.detect`` gives the network for this image."""
    height, width = gray.shape
    factor = min(1.0, max_side / max(height, width))
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    small = (
        gray
        if (new_w, new_h) == (width, height)
        else cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA)
    )
    padded_h = -(-new_h // centerface.SIZE_MULTIPLE) * centerface.SIZE_MULTIPLE
    padded_w = -(-new_w // centerface.SIZE_MULTIPLE) * centerface.SIZE_MULTIPLE
    blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
    blob[0, :, :new_h, :new_w] = small
    return blob


def full_hd(scene: Scene) -> Scene:
    """A 1280 x 720 composite scaled to 1920 x 1080, its boxes with it (pixel centres)."""
    f = FULL_HD[0] / scene.gray.shape[1]
    gray = np.asarray(cv2.resize(scene.gray, FULL_HD, interpolation=cv2.INTER_LINEAR), np.uint8)
    return Scene(gray, (scene.boxes + 0.5) * f - 0.5, (scene.landmark_boxes + 0.5) * f - 0.5)


class BlobReader:
    """onnxruntime's ``CalibrationDataReader`` over prepared detector inputs."""

    def __init__(self, blobs: Sequence[npt.NDArray[np.float32]]) -> None:
        self.blobs = blobs
        self._it: Iterator[npt.NDArray[np.float32]] = iter(blobs)

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        blob = next(self._it, None)
        return None if blob is None else {centerface.INPUT_NAME: blob}

    def rewind(self) -> None:
        self._it = iter(self.blobs)


def quantize(
    data_root: Path, out: Path, composite_count: int, crop_count: int, max_side: int
) -> dict[str, Any]:
    """Write the int8 graph; returns how it was calibrated."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    training = boxed_faces(data_root, SPLITS["training"])
    rng = np.random.default_rng(0)
    scenes = [full_hd(s) for s in composites(training, composite_count, seed=1)]
    picks = rng.choice(len(training), min(crop_count, len(training)), replace=False)
    blobs = [detector_input(s.gray, max_side) for s in scenes]
    blobs += [detector_input(read_gray(training[int(i)].image_path), max_side) for i in picks]
    proto = onnx.load(str(SOURCE))
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    proto = version_converter.convert_version(proto, 13)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="centerface-int8-") as folder:
        raised = Path(folder) / "opset13.onnx"
        onnx.save(proto, str(raised))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(folder) / "folded.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(raised), options, providers=["CPUExecutionProvider"])
        quantize_static(
            str(Path(folder) / "folded.onnx"),
            str(out),
            BlobReader(blobs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True},
        )
    return {
        "source": SOURCE.name,
        "calibration": {
            "split": "training",
            "composites_1920x1080": len(scenes),
            "crops": len(picks),
            "max_side": max_side,
            "method": "minmax",
        },
        "format": "QDQ, int8 weights per channel, uint8 activations",
        "onnxruntime": ort.__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }


def compare(
    int8: Path, data_root: Path, limit: int, threshold: float, max_side: int, repeats: int
) -> dict[str, Any]:
    """Recall, extra boxes and speed of both graphs on common-test crops and 1080p composites."""
    common = boxed_faces(data_root, SPLITS["common"], limit)
    singles = single_scenes(common)
    multi = [full_hd(s) for s in composites(boxed_faces(data_root, SPLITS["common"]), 20)]
    detectors = {
        "float32": centerface.CenterFace(
            threshold=0.1, max_side=max_side, threads=1, precision="float32"
        ),
        "int8": centerface.CenterFace(
            threshold=0.1, max_side=max_side, threads=1, precision="int8", weights=int8
        ),
    }
    report: dict[str, Any] = {"threshold": threshold, "max_side": max_side}
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(repeats):  # in turns, so a busy machine slows both alike
        for name, detector in detectors.items():
            for scene in multi[:3]:
                t0 = time.perf_counter()
                detector.detect(scene.gray)
                times[name].append(time.perf_counter() - t0)
    for name, detector in detectors.items():

        def detect(gray: GrayImage, d: centerface.CenterFace = detector) -> list[Any]:
            return d.detect(gray).faces

        single = score_scenes(detect, singles, [threshold])[threshold]
        many = score_scenes(detect, multi, [threshold])[threshold]
        report[name] = {
            "common_crops": {"images": len(singles), "recall": round(single[0], 4),
                             "extra_per_image": round(single[2], 4)},
            "composites_1080p": {"scenes": len(multi), "faces": int(sum(len(s.boxes) for s in multi)),
                                 "recall": round(many[0], 4), "extra_per_image": round(many[2], 3)},
            "ms_1080p_median": round(1000 * statistics.median(times[name]), 1),
        }  # fmt: skip
    report["speedup"] = round(
        report["float32"]["ms_1080p_median"] / report["int8"]["ms_1080p_median"], 2
    )
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="300-W root")
    p.add_argument("--out", type=Path, default=OUTPUT, help="the int8 graph to write")
    p.add_argument("--composites", type=positive_int, default=24, help="1080p training composites")
    p.add_argument("--crops", type=positive_int, default=40, help="training crops")
    p.add_argument(
        "--max-side",
        type=positive_int,
        default=centerface.DEFAULT_MAX_SIDE,
        help="DAN_DETECTOR_MAX_SIDE",
    )
    p.add_argument(
        "--limit", type=non_negative_int, default=0, help="common-test crops compared (0: all)"
    )
    p.add_argument("--threshold", type=fraction, default=0.5, help="DAN_DETECTOR_THRESHOLD")
    p.add_argument("--repeats", type=positive_int, default=3, help="timing rounds")
    p.add_argument("--no-compare", action="store_true", help="only write the graph")
    args = p.parse_args(argv)
    made = quantize(args.data_root, args.out, args.composites, args.crops, args.max_side)
    log.info("wrote %s in %.0f s", args.out, made["seconds"])
    if not args.no_compare:
        made["compared"] = compare(
            args.out, args.data_root, args.limit, args.threshold, args.max_side, args.repeats
        )
    report = args.out.with_suffix(".json")
    report.write_text(json.dumps(made, indent=2) + "\n")
    print(json.dumps(made, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
