"""An int8 model file for CPUs: static quantization of an exported DAN, its drift measured.

    python -m training.quantize model/dan-300w.onnx --data-root ../shared/data/300w \
        --out model/dan-300w.int8.onnx

1. Prepares the fp32 graph: weights stored as float16 (``training.export``'s
   ``Cast`` of an initializer) become float32 initializers, and onnxruntime's
   basic optimisations fold each batch normalisation into the convolution or
   dense layer before it, so the quantizer sees plain weights.
2. Calibrates on crops of TRAINING images only (``--calibration-images``
   faces spread evenly over the training split, cropped from their box-file
   boxes by ``model.crop`` as the service crops), and quantizes the weight
   layers (Conv, MatMul, Gemm with a weight initializer) to int8 in QDQ form:
   per-channel int8 weights, activations ``--activation-type``, ranges by
   ``--method``. The connection layers' arithmetic (similarity transforms,
   image resampling, heatmaps) is never quantized; ``--keep-fp32`` names
   further weight layers that stay float32 (the defaults are the layers
   ``model/QUANTIZATION.md`` found to drift most).
3. Measures the drift: ``training.evaluate`` of both files on the common
   subset (``boxes.csv`` boxes), and writes, through ``model.metadata``, the
   quantized file's ``dan.precision`` (``int8``), ``dan.calibration`` (the
   set, the method, the layers kept in float32), ``dan.drift`` (both files'
   numbers and their differences) and its own ``dan.accuracy``.

``--max-drift`` (percentage points of inter-ocular error) makes the command
fail when the drift is larger; the file is written either way, so it can be
inspected. Needs the ``onnx`` package (the ``train`` extra), no torch. A few
minutes on a 2-core CPU, most of it the two evaluations.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model.crop import crop_face
from model.metadata import ModelMetadata, onnx_props, set_onnx_props
from training.arguments import non_negative_float, non_negative_int, positive_int
from training.dataset import SPLITS, Sample, load_split, read_gray
from training.paths import DEFAULT_DATA_ROOT

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("training.quantize")

PRECISION = "int8"
CALIBRATION_SPLIT = "training"
DRIFT_SPLIT = "common"
DRIFT_KEYS = ("inter_ocular", "inter_pupil", "box_diagonal", "auc_0_08", "failure_0_08")
WEIGHT_OPS = ("Conv", "MatMul", "Gemm")
PASSTHROUGH_OPS = ("MaxPool", "Relu", "Flatten")
# Groups of weight layers that --keep-fp32 can name, by the node names training.export writes
# (module paths of model.dan.DAN): a node belongs to a group when its name holds the pattern.
LAYER_GROUPS: dict[str, tuple[str, ...]] = {
    "first_conv": ("/features/features.0/",),  # each stage's first convolution
    "convs": ("/features/",),  # every convolution
    # each stage's first dense layer (the flattened features): onnxruntime renames it when it
    # folds its batch normalisation in
    "fc1": ("/fc1/", "MatMulBnFusion"),
    "last_dense": ("/fc2/",),  # each stage's landmark regression (its output)
    "connections": ("/connections.",),  # the connection layers' dense layer (feature image)
    "confidence_head": ("/head/",),  # the confidence head (training.confidence), if any
}
DEFAULT_KEEP_FP32 = ("last_dense", "confidence_head")
METHODS = ("minmax", "entropy", "percentile", "distribution")
CALIBRATION_BATCH = 10  # crops per calibration run, at most (a divisor of their number)


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize: what ``dan.calibration`` records."""

    calibration_images: int = 200
    method: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    activation_type: str = "uint8"  # uint8 or int8
    symmetric_activations: bool = False
    keep_fp32: tuple[str, ...] = DEFAULT_KEEP_FP32
    quantize_pooling: bool = True  # the stages' MaxPool, Relu, Flatten on int8 too

    def __post_init__(self) -> None:
        if self.calibration_images < 1:
            raise ValueError(f"calibration_images must be >= 1, got {self.calibration_images}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.activation_type not in ("uint8", "int8"):
            raise ValueError(f"activation_type must be uint8 or int8, got {self.activation_type}")
        unknown = sorted(set(self.keep_fp32) - set(LAYER_GROUPS))
        if unknown:
            raise ValueError(f"unknown layer group(s) {unknown}; known: {sorted(LAYER_GROUPS)}")


def calibration_samples(data_root: Path, count: int) -> list[Sample]:
    """``count`` faces of the training split with a box-file box, spread evenly over it (sorted
    by name, so the choice does not depend on the file system's order)."""
    data = load_split(data_root, CALIBRATION_SPLIT)
    boxed = sorted((s for s in data.samples if s.detector_box is not None), key=lambda s: s.name)
    if not boxed:
        raise SystemExit(
            f"no training images with a box-file box under {data_root} (subsets "
            f"{', '.join(SPLITS[CALIBRATION_SPLIT])}): calibration needs training images"
        )
    if count >= len(boxed):
        return boxed
    picks = np.linspace(0, len(boxed) - 1, count).round().astype(int)
    return [boxed[int(i)] for i in picks]


def calibration_crops(
    samples: Sequence[Sample], mean_shape: npt.NDArray[np.float64], size: int
) -> npt.NDArray[np.float32]:
    """The crops (N, 1, S, S) float32 the service would give the model for these faces."""
    crops = [
        crop_face(read_gray(s.image_path), s.box("file"), mean_shape, size).pixels for s in samples
    ]
    return np.stack(crops)[:, None].astype(np.float32)


class CropReader:
    """onnxruntime's ``CalibrationDataReader``: the crops in batches of the input's name (of one
    size: the histogram calibrators stack the batches' outputs)."""

    def __init__(
        self, input_name: str, crops: npt.NDArray[np.float32], batch: int = CALIBRATION_BATCH
    ) -> None:
        self.input_name = input_name
        self.crops = crops
        self.batch = max(d for d in range(1, batch + 1) if len(crops) % d == 0)
        self._batches: Iterator[dict[str, npt.NDArray[np.float32]]] = iter(())
        self.rewind()

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = (
            {self.input_name: self.crops[i : i + self.batch]}
            for i in range(0, len(self.crops), self.batch)
        )

    def __len__(self) -> int:
        return -(-len(self.crops) // self.batch)


def fold_fp16_weights(proto: onnx.ModelProto) -> int:
    """Replace each ``Cast`` of a float16 initializer to float32 by a float32 initializer (in
    place); returns how many. Other nodes are untouched."""
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    folded = 0
    kept = []
    for node in graph.node:
        source = initializers.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if (
            source is not None
            and source.data_type == onnx.TensorProto.FLOAT16
            and to == onnx.TensorProto.FLOAT
        ):
            value = numpy_helper.to_array(source).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            folded += 1
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return folded


def prepare(model_path: Path, work: Path) -> Path:
    """The fp32 graph the quantizer reads: fp16 weights folded, batch norms folded into the
    layers before them (onnxruntime's basic optimisations, written out), shapes inferred."""
    import onnx

    proto = onnx.load(str(model_path))
    folded = fold_fp16_weights(proto)
    unfolded = work / "unfolded.onnx"
    onnx.save(proto, str(unfolded))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(work / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(unfolded), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(work / "optimized.onnx"))
    optimized = onnx.shape_inference.infer_shapes(optimized)
    prepared = work / "prepared.onnx"
    onnx.save(optimized, str(prepared))
    log.info(
        "prepared %s: %d float16 weights made float32, %d nodes after folding",
        model_path.name,
        folded,
        len(optimized.graph.node),
    )
    return prepared


def weight_layers(proto: onnx.ModelProto) -> list[str]:
    """Names of the Conv, MatMul and Gemm nodes whose second input is an initializer."""
    initializers = {t.name for t in proto.graph.initializer}
    return [
        n.name
        for n in proto.graph.node
        if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in initializers
    ]


def stage_passthrough(proto: onnx.ModelProto) -> list[str]:
    """Names of the stages' MaxPool, Relu and Flatten nodes: with them quantized, int8 tensors
    flow from one convolution to the next without a float32 round trip."""
    return [
        n.name
        for n in proto.graph.node
        if n.op_type in PASSTHROUGH_OPS and "/stages." in n.name and "/fc2/" not in n.name
    ]


def in_groups(name: str, groups: Sequence[str]) -> bool:
    return any(pattern in name for g in groups for pattern in LAYER_GROUPS[g])


def quantize(
    model_path: Path, data_root: Path, out: Path, options: QuantizeOptions
) -> dict[str, Any]:
    """Write the int8 file ``out`` (no drift measured yet); returns its ``dan.calibration``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    source = onnx.load(str(model_path), load_external_data=False)
    props = onnx_props(source)
    metadata = ModelMetadata.from_onnx_props(props, model_path)
    samples = calibration_samples(data_root, options.calibration_images)
    crops = calibration_crops(samples, metadata.mean_shape, metadata.input_size)
    with tempfile.TemporaryDirectory(prefix="dan-quantize-") as folder:
        prepared = prepare(model_path, Path(folder))
        graph = onnx.load(str(prepared))
        layers = weight_layers(graph)
        quantized = [n for n in layers if not in_groups(n, options.keep_fp32)]
        kept = [n for n in layers if n not in quantized]
        passthrough = stage_passthrough(graph) if options.quantize_pooling else []
        methods = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
            "distribution": CalibrationMethod.Distribution,
        }
        extra: dict[str, Any] = {
            "ActivationSymmetric": options.symmetric_activations,
            "WeightSymmetric": True,
            "CalibTensorRangeSymmetric": False,
        }
        if options.method == "percentile":
            extra["CalibPercentile"] = options.percentile
        started = time.perf_counter()
        quantize_static(
            str(prepared),
            str(out),
            CropReader(metadata.input_name, crops),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=[*WEIGHT_OPS, *PASSTHROUGH_OPS],
            nodes_to_quantize=[*quantized, *passthrough],
            per_channel=options.per_channel,
            activation_type=QuantType.QUInt8
            if options.activation_type == "uint8"
            else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[options.method],
            extra_options=extra,
        )
        seconds = time.perf_counter() - started
    names = "\n".join(s.name for s in samples)
    calibration: dict[str, Any] = {
        "split": CALIBRATION_SPLIT,
        "images": len(samples),
        "selection": "evenly spaced over the split's faces with a box-file box, sorted by name",
        "names_sha256": hashlib.sha256(names.encode()).hexdigest(),
        "first": samples[0].name,
        "last": samples[-1].name,
        "boxes": "file",
        "method": options.method,
        **({"percentile": options.percentile} if options.method == "percentile" else {}),
        "format": "QDQ",
        "weights": "int8, per channel" if options.per_channel else "int8, per tensor",
        "activations": options.activation_type
        + (", symmetric" if options.symmetric_activations else ", asymmetric"),
        "quantized_layers": len(quantized),
        "int8_pooling": options.quantize_pooling,
        "fp32_layers": kept,
        "fp32_groups": list(options.keep_fp32),
        "source": {"file": model_path.name, "version": metadata.version},
        "onnxruntime": ort.__version__,
        "seconds": round(seconds, 1),
    }
    log.info(
        "quantized %d of %d weight layers (float32: %s) in %.1f s",
        len(quantized),
        len(layers),
        ", ".join(kept) or "none",
        seconds,
    )
    write_metadata(out, props, calibration=calibration)
    return calibration


def write_metadata(
    path: Path,
    source_props: dict[str, str],
    precision: str = PRECISION,
    weights_dtype: str = "int8 (quantized layers), float32",
    **changes: Any,
) -> None:
    """Give the file at ``path`` the source's ``dan.*`` metadata with ``changes`` (ModelMetadata
    fields) and ``dan.precision``, through ``model.metadata``'s writer."""
    import onnx

    proto = onnx.load(str(path))
    metadata = ModelMetadata.from_onnx_props(source_props, path)
    updated = dataclasses.replace(
        metadata, precision=precision, weights_dtype=weights_dtype, **changes
    )
    set_onnx_props(proto, updated.to_onnx_props())
    onnx.save(proto, str(path))


def measure_drift(
    fp32: Path,
    int8: Path,
    data_root: Path,
    threads: int = 0,
    limit: int = 0,
    precision: str = PRECISION,
) -> dict[str, Any]:
    """Both files on the common subset (``training.evaluate``, box-file boxes): their numbers
    and the differences in percentage points (``precision`` names the second file's row)."""
    from training.evaluate import evaluate

    reference = evaluate(fp32, data_root, DRIFT_SPLIT, threads=threads, limit=limit)
    quantized = evaluate(int8, data_root, DRIFT_SPLIT, threads=threads, limit=limit)
    drift: dict[str, Any] = {
        "split": DRIFT_SPLIT,
        "images": quantized["images"],
        "boxes": "file",
        "measured_with": "training.evaluate",
        "float32": {k: round(reference[k], 6) for k in DRIFT_KEYS},
        precision: {k: round(quantized[k], 6) for k in DRIFT_KEYS},
        "difference_points": {k: round(100 * (quantized[k] - reference[k]), 4) for k in DRIFT_KEYS},
        "_summary": quantized,
    }
    confidence = confidence_drift(fp32, int8, data_root, threads, limit)
    if confidence is not None:
        drift["confidence"] = confidence
    return drift


def confidence_drift(
    fp32: Path, int8: Path, data_root: Path, threads: int = 0, limit: int = 0
) -> dict[str, Any] | None:
    """For a model with a confidence output: how far the quantized file's confidences are from
    the fp32 file's on the common subset's crops, and how often the two agree on the status at
    the model's threshold. None for a model without one."""
    from training.evaluate import OnnxModel

    models = [OnnxModel.load(path, threads) for path in (fp32, int8)]
    info = models[0].metadata.confidence
    if info is None:
        return None
    samples = load_split(data_root, DRIFT_SPLIT).samples
    samples = samples[:limit] if limit > 0 else samples
    meta = models[0].metadata
    crops = calibration_crops(samples, meta.mean_shape, meta.input_size)
    scores = []
    for model in models:
        outputs = [
            model.session.run([info.output_name], {meta.input_name: crops[i : i + 32]})[0]
            for i in range(0, len(crops), 32)
        ]
        scores.append(np.concatenate(outputs).astype(np.float64))
    a, b = scores
    return {
        "threshold": info.threshold,
        "mean_abs_difference": round(float(np.abs(a - b).mean()), 5),
        "max_abs_difference": round(float(np.abs(a - b).max()), 5),
        "status_agreement": round(
            float(((a >= info.threshold) == (b >= info.threshold)).mean()), 4
        ),
    }


def record_drift(path: Path, drift: dict[str, Any]) -> None:
    """Store the drift in ``dan.drift`` and the file's own common-subset accuracy."""
    import onnx

    proto = onnx.load(str(path))
    props = onnx_props(proto)
    metadata = ModelMetadata.from_onnx_props(props, path)
    summary = drift["_summary"]
    accuracy = dict(metadata.accuracy)
    accuracy[DRIFT_SPLIT] = {
        k: summary[k] for k in ("images", "boxes", *DRIFT_KEYS) if k in summary
    }
    public = {k: v for k, v in drift.items() if not k.startswith("_")}
    updated = dataclasses.replace(metadata, drift=public, accuracy=accuracy)
    set_onnx_props(proto, updated.to_onnx_props())
    onnx.save(proto, str(path))


def derived_file_parser(
    doc: str | None, written: str, keep_fp32_default: str, keep_fp32_note: str = ""
) -> argparse.ArgumentParser:
    """The arguments every converter of a released file shares (this module's int8 and
    ``training.fp16``): the fp32 model, where the data is, the file ``written``, the layer
    groups kept in float32, and the drift measurement's switches."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0] if doc else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", type=Path, help="fp32 ONNX file written by training.export")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="300-W root")
    p.add_argument("--out", type=Path, required=True, help=f"the {written} file to write")
    p.add_argument(
        "--keep-fp32",
        default=keep_fp32_default,
        help=f"comma-separated layer groups left in float32 ({', '.join(LAYER_GROUPS)})"
        + keep_fp32_note,
    )
    p.add_argument("--no-measure", action="store_true", help="skip the drift measurement")
    p.add_argument(
        "--threads", type=non_negative_int, default=0, help="evaluation threads (0: all cores)"
    )
    p.add_argument(
        "--limit", type=non_negative_int, default=0, help="drift on the first N images (0: all)"
    )
    return p


def layer_groups(text: str) -> tuple[str, ...]:
    """``--keep-fp32``'s comma-separated groups, blanks dropped."""
    return tuple(g.strip() for g in text.split(",") if g.strip())


def get_args_parser() -> argparse.ArgumentParser:
    p = derived_file_parser(__doc__, "int8", ",".join(DEFAULT_KEEP_FP32), "; '' for none")
    p.add_argument(
        "--calibration-images",
        type=positive_int,
        default=200,
        help="training faces to calibrate on",
    )
    p.add_argument("--method", choices=METHODS, default="minmax", help="activation ranges")
    p.add_argument("--percentile", type=float, default=99.999, help="with --method percentile")
    p.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one weight scale per output channel",
    )
    p.add_argument(
        "--activation-type", choices=("uint8", "int8"), default="uint8", help="activations"
    )
    p.add_argument(
        "--symmetric-activations", action="store_true", help="activation ranges about zero"
    )
    p.add_argument(
        "--max-drift",
        type=non_negative_float,
        default=None,
        help="fail (exit 1) when the inter-ocular drift exceeds this many points",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    try:
        import onnx  # noqa: F401  (checked first: the quantizer and the metadata writer need it)
    except ImportError:
        raise SystemExit(
            "training.quantize needs the onnx package: pip install -e '.[train]'"
        ) from None
    if args.out.resolve() == args.model.resolve():
        raise SystemExit(f"--out must differ from the model ({args.model})")
    try:
        options = QuantizeOptions(
            calibration_images=args.calibration_images,
            method=args.method,
            percentile=args.percentile,
            per_channel=args.per_channel,
            activation_type=args.activation_type,
            symmetric_activations=args.symmetric_activations,
            keep_fp32=layer_groups(args.keep_fp32),
        )
    except ValueError as e:
        raise SystemExit(str(e)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    quantize(args.model, args.data_root, args.out, options)
    if args.no_measure:
        log.info("wrote %s (drift not measured)", args.out)
        return 0
    drift = measure_drift(args.model, args.out, args.data_root, args.threads, args.limit)
    record_drift(args.out, drift)
    d = drift["difference_points"]
    sys.stdout.write(
        f"{args.out}: int8, common subset ({drift['images']} images, boxes.csv): inter-ocular "
        f"{100 * drift['float32']['inter_ocular']:.3f}% -> {100 * drift['int8']['inter_ocular']:.3f}% "
        f"({d['inter_ocular']:+.3f} points), inter-pupil {d['inter_pupil']:+.3f}, "
        f"AUC0.08 {d['auc_0_08']:+.3f}, failure {d['failure_0_08']:+.3f}\n"
    )
    if args.max_drift is not None and abs(d["inter_ocular"]) > args.max_drift:
        log.error(
            "inter-ocular drift %.3f points > --max-drift %g", d["inter_ocular"], args.max_drift
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
