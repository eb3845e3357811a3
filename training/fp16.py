"""A float16 model file for GPUs: fp16 activations and weights in the network's stages.

    python -m training.fp16 model/dan-300w.onnx --data-root ../shared/data/300w \
        --out model/dan-300w.fp16.onnx

The convolutions, dense layers, batch normalisations, activations and pooling
of every stage run in float16 (onnxruntime's ``float16`` converter, with the
weights' ``Cast`` from float16 storage folded first, ``training.quantize``);
the input and outputs stay float32 (the service's contract), and so do the
connection layers: the least-squares similarity sums squared coordinates
beyond float16's range (65504), and the resampling and heatmaps are cheap.
``--keep-fp32 last_dense`` keeps each stage's landmark regression in float32
too (its output is in crop pixels, where float16 steps are 1/32 px at 32 px).

The drift is measured as for int8 (``training.evaluate`` of both files on the
common subset) when onnxruntime's CPU provider can run the file, and stored
in ``dan.drift``; ``dan.precision`` is ``float16``. Where the CPU provider has
no float16 kernel for an operator the command says so and writes the file
without ``dan.drift`` (measure it on a GPU: ``bench/gpu_check.sh``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort

from model.metadata import ModelMetadata, onnx_props
from training.quantize import (
    LAYER_GROUPS,
    derived_file_parser,
    fold_fp16_weights,
    in_groups,
    layer_groups,
    measure_drift,
    record_drift,
    write_metadata,
)

log = logging.getLogger("training.fp16")

PRECISION = "float16"
# Nodes converted: those of the network's stages (convolutions, dense layers and what lies
# between them), by the node names training.export writes.
FP16_SCOPE = ("/stages.",)


def convert(model_path: Path, out: Path, keep_fp32: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write the float16 file; returns what its ``dan.calibration`` records."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(model_path))
    props = onnx_props(proto)
    ModelMetadata.from_onnx_props(props, model_path)
    fold_fp16_weights(proto)
    converted = [
        n.name
        for n in proto.graph.node
        if any(s in n.name for s in FP16_SCOPE) and not in_groups(n.name, keep_fp32)
    ]
    chosen = set(converted)
    blocked = [n.name for n in proto.graph.node if n.name not in chosen]
    half = convert_float_to_float16(
        proto, keep_io_types=True, node_block_list=blocked, disable_shape_infer=False
    )
    onnx.save(half, str(out))
    recipe: dict[str, Any] = {
        "method": "onnxruntime.transformers.float16.convert_float_to_float16, keep_io_types",
        "float16_nodes": len(converted),
        "float16_scope": "the stages (convolutions, batch norms, ReLU, pooling, dense layers)",
        "float32": "input, outputs, connection layers"
        + (f", {', '.join(keep_fp32)}" if keep_fp32 else ""),
        "fp32_groups": list(keep_fp32),
        "source": {"file": model_path.name, "version": props.get("dan.model_version", "")},
        "onnxruntime": ort.__version__,
    }
    write_metadata(out, props, precision=PRECISION, weights_dtype="float16", calibration=recipe)
    log.info("wrote %s: %d nodes in float16", out, len(converted))
    return recipe


def cpu_can_run(path: Path) -> str | None:
    """None when onnxruntime's CPU provider loads and runs the file, else its error."""
    import numpy as np

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        size = int(session.get_inputs()[0].shape[-1])
        session.run(None, {name: np.full((1, 1, size, size), 127.0, dtype=np.float32)})
    except Exception as e:  # onnxruntime raises its own types
        return str(e).splitlines()[0]
    return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    p = derived_file_parser(__doc__, "float16", "")
    args = p.parse_args(argv)
    groups = layer_groups(args.keep_fp32)
    unknown = sorted(set(groups) - set(LAYER_GROUPS))
    if unknown:
        p.error(f"unknown layer group(s) {unknown}; known: {sorted(LAYER_GROUPS)}")
    if args.out.resolve() == args.model.resolve():
        p.error(f"--out must differ from the model ({args.model})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    convert(args.model, args.out, groups)
    if args.no_measure:
        return 0
    problem = cpu_can_run(args.out)
    if problem is not None:
        log.warning(
            "onnxruntime's CPU provider cannot run %s (%s): drift not measured here; measure it "
            "on a GPU (bench/gpu_check.sh)",
            args.out,
            problem,
        )
        return 0
    drift = measure_drift(
        args.model, args.out, args.data_root, args.threads, args.limit, precision=PRECISION
    )
    drift["measured_on"] = "onnxruntime CPU provider"
    record_drift(args.out, drift)
    d = drift["difference_points"]
    sys.stdout.write(
        f"{args.out}: float16, common subset ({drift['images']} images, boxes.csv): inter-ocular "
        f"{d['inter_ocular']:+.4f} points, inter-pupil {d['inter_pupil']:+.4f}, "
        f"AUC0.08 {d['auc_0_08']:+.3f}, failure {d['failure_0_08']:+.3f}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
