"""Export a DAN to one self-describing ONNX graph that onnxruntime alone can serve.

    python -m training.export runs/dan/best.pt model/dan-300w.onnx

Input ``images`` (B, 1, S, S): raw grayscale crops (mean of R, G, B) in
[0, 255]. Outputs ``landmarks`` (B, 68, 2), the last stage's landmarks in crop
pixels (centre of the top-left pixel at (0, 0)), and ``stage_landmarks``
(B, stages, 68, 2); with a confidence head (``training.confidence`` trains
one and exports through ``export(..., confidence=...)``) also ``confidence``
(B,) in [0, 1], described by the ``dan.confidence`` metadata. Every node is in the default ONNX domain. The file's
``metadata_props`` carry everything serving needs (the ``dan.*`` keys of
``model.metadata``, written by ``ModelMetadata.to_onnx_props``). Large
weights are stored as fp16 initializers followed by a Cast to fp32, which
onnxruntime folds once at load.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from model.config import DANConfig
from model.dan import DAN
from model.landmarks import SCHEME
from model.metadata import (
    CONFIDENCE_OUTPUT_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    STAGE_OUTPUT_NAME,
    ConfidenceInfo,
    MetadataError,
    ModelMetadata,
    onnx_props,
    set_onnx_props,
)
from training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

OPSET = 17
MIN_OPSET = 16  # GridSample, which the transform of each later stage needs, came in opset 16
OUTPUT_NAMES = (OUTPUT_NAME, STAGE_OUTPUT_NAME)
FP16_MIN_ELEMENTS = 4096  # smaller tensors (norm statistics, biases, mean shape) stay fp32
TRANSPOSED_SUFFIX = ".T"  # initializer holds the transpose of the named state-dict tensor
LICENCE = (
    "Code: MIT. Weights: trained on 300-W, whose images and annotations are for non-commercial "
    "research use only; the weights inherit that restriction."
)


class _Exported(nn.Module):
    def __init__(self, dan: DAN, head: nn.Module | None = None) -> None:
        super().__init__()
        self.dan = dan
        self.head = head

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        shapes, features = self.dan.forward_features(images)  # stages x (B, N, 2), (B, F)
        outputs = (shapes[-1], torch.stack(shapes, dim=1))  # (B, N, 2), (B, stages, N, 2)
        if self.head is None:
            return outputs
        return (*outputs, self.head(shapes, features))  # confidence (B,)


def metadata(
    model: DAN,
    name: str,
    version: str,
    training_data: str,
    accuracy: dict[str, Any] | None,
    weights_dtype: str,
    confidence: ConfidenceInfo | None = None,
    licence: str = LICENCE,
) -> ModelMetadata:
    """The ``dan.*`` metadata of an exported model."""
    c = model.config
    return ModelMetadata(
        name=name,
        version=version,
        input_size=c.image_size,
        mean_shape=model.mean_shape.double().numpy(),
        num_landmarks=c.num_landmarks,
        num_stages=c.num_stages,
        config=c.to_dict(),
        training_data=training_data,
        accuracy=accuracy or {},
        weights_dtype=weights_dtype,
        licence=licence,
        confidence=confidence,
    )


def _rename_initializers(proto: onnx.ModelProto, state: dict[str, Tensor], prefix: str) -> None:
    """Name every weight initializer after its state-dict key (``.T`` if stored transposed)."""
    graph = proto.graph
    renames: dict[str, str] = {}
    by_name = {init.name: init for init in graph.initializer}
    unmatched = {k: v for k, v in state.items() if prefix + k not in by_name}
    for init in graph.initializer:
        if init.name.startswith(prefix) and init.name[len(prefix) :] in state:
            renames[init.name] = init.name[len(prefix) :]
            continue
        array = numpy_helper.to_array(init)
        for key, value in list(unmatched.items()):
            v = value.detach().cpu().numpy()
            if v.ndim == 2 and array.shape == v.T.shape and np.array_equal(array, v.T):
                renames[init.name] = key + TRANSPOSED_SUFFIX
                del unmatched[key]
                break
    _rename(graph, renames)
    for init in graph.initializer:
        if init.name in renames:
            init.name = renames[init.name]
    # The exporter shares one initializer between tensors of equal value (untrained batch norms,
    # say): store the others too, unreferenced, so that every weight can be read back by name.
    for key, value in unmatched.items():
        if not key.endswith("num_batches_tracked"):
            graph.initializer.append(numpy_helper.from_array(value.detach().cpu().numpy(), key))


def _rename(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def compress_fp16(proto: onnx.ModelProto, min_elements: int = FP16_MIN_ELEMENTS) -> None:
    """Store large fp32 initializers as fp16, each followed by one Cast back to fp32."""
    graph = proto.graph
    casts = []
    renames = {}
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < min_elements:
            continue
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), init.name))
        fp32_name = init.name + "/fp32"
        renames[init.name] = fp32_name
        casts.append(
            onnx.helper.make_node(
                "Cast",
                [init.name],
                [fp32_name],
                to=onnx.TensorProto.FLOAT,
                name=f"cast:{init.name}",
            )
        )
    _rename(graph, renames)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def export_graph(
    wrapper: nn.Module,
    example: Tensor,
    path: Path,
    opset: int = OPSET,
    output_names: tuple[str, ...] = OUTPUT_NAMES,
) -> None:
    """``torch.onnx.export`` of a module taking crops (B, 1, S, S), every axis 0 dynamic."""
    with warnings.catch_warnings():
        # The image size is static (the tracer's constant is right), and constant folding in
        # PRESERVE mode is safe here because the model is in eval mode.
        tracer_warning = torch.jit.TracerWarning  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", category=tracer_warning)
        warnings.filterwarnings("ignore", message=".*constant folding.*")
        # The TorchScript exporter is the one that writes opset 17 with unfused batch norms.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        _export_graph(wrapper, example, path, opset, output_names)


def _export_graph(
    wrapper: nn.Module, example: Tensor, path: Path, opset: int, output_names: tuple[str, ...]
) -> None:
    torch.onnx.export(
        wrapper,
        (example,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=list(output_names),
        dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *output_names)},
        # PRESERVE (with the model in eval mode) keeps batch norms unfused and weights under
        # their own names, so the file can be read back into a DAN to continue training.
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=True,
    )


def export(
    model: DAN,
    path: Path,
    name: str = "dan-300w",
    version: str = "0.0.0",
    training_data: str = "unknown",
    accuracy: dict[str, Any] | None = None,
    fp16: bool = True,
    opset: int = OPSET,
    confidence: tuple[nn.Module, ConfidenceInfo] | None = None,
    licence: str = LICENCE,
) -> onnx.ModelProto:
    """Write ``model`` to ``path`` as one ONNX graph; returns the written proto.

    ``confidence``: a head (called with every stage's landmarks and fc1 activations, returning
    (B,) in [0, 1]) and its description; the graph then has a ``confidence`` output and the
    metadata ``dan.confidence``.
    """
    model = model.cpu().float().eval()
    head = None if confidence is None else confidence[0].cpu().float().eval()
    info = None if confidence is None else confidence[1]
    if info is not None and info.output_name != CONFIDENCE_OUTPUT_NAME:
        raise ValueError(
            f"the confidence output is named {CONFIDENCE_OUTPUT_NAME!r}, got {info.output_name!r}"
        )
    wrapper = _Exported(model, head).eval()
    size = model.config.image_size
    example = torch.rand(2, 1, size, size) * 255.0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    names = OUTPUT_NAMES if head is None else (*OUTPUT_NAMES, CONFIDENCE_OUTPUT_NAME)
    export_graph(wrapper, example, tmp, opset, names)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    _rename_initializers(proto, model.state_dict(), prefix="dan.")
    if fp16:
        compress_fp16(proto)
    proto.producer_name = "dan-align"
    proto.doc_string = (
        f"Deep Alignment Network, {model.config.num_stages} stages, {SCHEME} landmarks"
    )
    meta = metadata(
        model,
        name,
        version,
        training_data,
        accuracy,
        "float16" if fp16 else "float32",
        info,
        licence,
    )
    set_onnx_props(proto, meta.to_onnx_props())
    onnx.checker.check_model(proto, full_check=True)
    foreign = {n.domain for n in proto.graph.node if n.domain not in ("", "ai.onnx")}
    if foreign:
        raise RuntimeError(f"exported graph uses non-default op domains {sorted(foreign)}")
    onnx.save(proto, str(path))
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return proto


def read_onnx_weights(path: Path) -> tuple[DANConfig, dict[str, Tensor]]:
    """The config and state dict of a model this module exported (fp16 weights back to fp32)."""
    proto = onnx.load(str(path))
    meta = ModelMetadata.from_onnx_props(onnx_props(proto), path)
    if meta.config is None:
        raise MetadataError(f"{path} has no dan.config metadata: not exported by training.export")
    config = DANConfig.from_dict(meta.config)
    reference = DAN(config).state_dict()
    state: dict[str, Tensor] = {}
    for init in proto.graph.initializer:
        key, transposed = init.name, init.name.endswith(TRANSPOSED_SUFFIX)
        if transposed:
            key = key[: -len(TRANSPOSED_SUFFIX)]
        if key not in reference:
            continue
        array = numpy_helper.to_array(init).astype(np.float32)
        state[key] = torch.from_numpy(np.ascontiguousarray(array.T if transposed else array))
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path} lacks weights {missing[:5]}{'...' if len(missing) > 5 else ''}")
    return config, state


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("checkpoint", type=Path, help="training checkpoint (.pt) carrying its config")
    p.add_argument("output", type=Path, help="ONNX file to write")
    p.add_argument("--name", default="dan-300w", help="model name written into the metadata")
    p.add_argument("--version", default="0.0.0", help="model version written into the metadata")
    p.add_argument(
        "--training-data",
        default="300-W training split (AFW, LFPW train, HELEN train) as found under the data root",
        help="description of the training data written into the metadata",
    )
    p.add_argument("--accuracy", type=Path, default=None, help="evaluation summary JSON to embed")
    p.add_argument("--fp32", action="store_true", help="store weights as fp32 (default: fp16)")
    p.add_argument(
        "--opset", type=int, default=OPSET, help=f"ONNX opset (>= {MIN_OPSET}, for GridSample)"
    )
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.opset < MIN_OPSET:
        parser.error(f"--opset must be >= {MIN_OPSET} (GridSample), got {args.opset}")
    data = load_checkpoint(args.checkpoint)
    model = DAN(DANConfig.from_dict(data["model_config"]))
    model.load_state_dict(data["model"])
    accuracy = json.loads(args.accuracy.read_text()) if args.accuracy else None
    export(
        model,
        args.output,
        args.name,
        args.version,
        args.training_data,
        accuracy,
        not args.fp32,
        args.opset,
    )


if __name__ == "__main__":
    main()
