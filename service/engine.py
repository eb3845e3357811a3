"""The inference engine: one onnxruntime session over an exported DAN, and what its metadata says.

The model file describes itself (``dan.*`` metadata written by
``training.export``, read and checked by ``model.metadata``); a file without
it, or of an unknown format version, is refused with a message naming what
was expected. A model with a confidence head (``training.confidence``: an
output ``confidence`` (B,) described by ``dan.confidence``) gives each face a
confidence too; a model without one still serves, its faces without a
confidence (``FaceOutput.confidence`` None). Providers come from the
settings: CPU with a set thread count, or CUDA / TensorRT with inputs and
outputs bound to device buffers (IO binding) and batches padded to a few
tuned sizes, each warmed up, so the GPU never meets a new shape while serving.
With ``DAN_MIRROR_AVERAGE`` every batch runs twice, as it is and mirrored
left-right, and each face is answered with the average of its two answers
(``model.landmarks.mirror_average``, as ``training.evaluate --mirror-average``;
the metadata check admits only the 68-point markup it permutes).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model.arrays import FloatArray, GrayImage
from model.landmarks import mirror_average
from model.metadata import MetadataError, ModelMetadata
from service.batching import size_buckets
from service.config import Settings
from service.errors import ModelError, ProviderError

log = logging.getLogger(__name__)

ActiveProvider = Literal["cpu", "cuda", "tensorrt"]

ORT_NAMES: dict[ActiveProvider, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
WARMUP_GRAY_LEVEL = 127


@dataclass(frozen=True, eq=False, kw_only=True)
class ModelInfo(ModelMetadata):
    """A model's ``dan.*`` metadata (``model.metadata.ModelMetadata``) and the file it came from."""

    path: Path


def read_model_info(metadata: Mapping[str, str], path: Path) -> ModelInfo:
    """Parse and check the ``dan.*`` metadata of a model file; ``ModelError`` says what is wrong."""
    try:
        parsed = ModelMetadata.from_onnx_props(metadata, path)
    except MetadataError as e:
        raise ModelError(str(e)) from None
    return ModelInfo(path=path, **parsed.field_values())


class NonFiniteOutputError(ValueError):
    """The model's output for one crop holds NaN or infinite values."""


@dataclass(frozen=True)
class FaceOutput:
    """The model's answer for one crop: landmarks (68, 2) in crop pixels, and its confidence in
    [0, 1] (None when the model has no confidence output)."""

    landmarks: FloatArray
    confidence: float | None = None


def min_confidence(settings: Settings, info: ModelMetadata) -> float | None:
    """The least confidence of an unflagged face: DAN_MIN_CONFIDENCE, else the model's default
    threshold; None for a model without a confidence output (then DAN_MIN_CONFIDENCE must be
    unset: ``ModelError``)."""
    if info.confidence is None:
        if settings.min_confidence is not None:
            raise ModelError(
                f"DAN_MIN_CONFIDENCE is set ({settings.min_confidence:g}) but the model has no "
                "confidence output (no dan.confidence metadata); unset it, or serve a model "
                "built by python -m training.confidence"
            )
        return None
    if settings.min_confidence is not None:
        return settings.min_confidence
    return info.confidence.threshold


@dataclass
class _Bound:
    """Device buffers of one batch size, bound once to the session's inputs and outputs."""

    binding: ort.IOBinding
    inputs: ort.OrtValue


@dataclass(frozen=True)
class Warmup:
    batch_sizes: tuple[int, ...]
    runs: int
    seconds: float


class Engine:
    """Runs batches of crops (B, S, S) uint8 through the model; one caller at a time."""

    def __init__(self, settings: Settings) -> None:
        path = settings.model_path
        self.provider = _wanted_provider(settings)
        chain = _provider_chain(settings, self.provider)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = settings.cpu_thread_count
        # Idle threads must not spin: decoding and cropping share the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=chain)
        except Exception as e:  # onnxruntime raises its own types for unreadable graphs
            raise ModelError(f"{path} cannot be loaded by onnxruntime: {e}") from None
        active = self.session.get_providers()[0]
        if active != ORT_NAMES[self.provider]:
            if settings.provider != "auto":
                raise ProviderError(
                    f"provider {settings.provider!r} was asked for but onnxruntime started "
                    f"{active} (its libraries or the device are missing)"
                )
            log.warning("CUDA is offered but did not start (%s is active); using CPU", active)
            self.provider = "cpu"
        self.info = read_model_info(self.session.get_modelmeta().custom_metadata_map, path)
        self._check_signature()
        self.confidence_name = (
            None if self.info.confidence is None else self.info.confidence.output_name
        )
        self.min_confidence = min_confidence(settings, self.info)
        self.mirror_average = settings.mirror_average
        self.on_gpu = self.provider != "cpu"
        self.max_batch_size = settings.batch_size_for(gpu=self.on_gpu)
        self.use_io_binding = self.on_gpu if settings.io_binding is None else settings.io_binding
        self.device = "cuda" if self.on_gpu else "cpu"
        self.device_id = settings.cuda_device_id if self.on_gpu else 0
        # GPUs run a few fixed batch sizes (powers of two and the maximum): each is tuned once
        # in warm-up. On CPU every size runs as it comes.
        self.batch_sizes = (
            size_buckets(self.max_batch_size)
            if self.on_gpu
            else tuple(range(1, self.max_batch_size + 1))
        )
        self._bound: dict[int, _Bound] = {}
        log.info(
            "loaded %s %s from %s on %s (%s threads, IO binding %s, batches up to %d%s)",
            self.info.name,
            self.info.version,
            path,
            self.provider,
            settings.cpu_thread_count if not self.on_gpu else "-",
            "on" if self.use_io_binding else "off",
            self.max_batch_size,
            ", each face also mirrored" if self.mirror_average else "",
        )

    def _check_signature(self) -> None:
        info, path = self.info, self.info.path
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if info.input_name not in inputs:
            raise ModelError(
                f"{path}: dan.input_name is {info.input_name!r} but the graph's inputs are "
                f"{sorted(inputs)}"
            )
        if info.output_name not in outputs:
            raise ModelError(
                f"{path}: dan.output_name is {info.output_name!r} but the graph's outputs are "
                f"{sorted(outputs)}"
            )
        given = inputs[info.input_name]
        size = info.input_size
        if given.type != "tensor(float)" or list(given.shape[1:]) != [1, size, size]:
            raise ModelError(
                f"{path}: expected input {info.input_name!r} float32 (B, 1, {size}, {size}), got "
                f"{given.type} {given.shape}"
            )
        shape = outputs[info.output_name].shape
        if len(shape) != 3 or list(shape[1:]) != [info.num_landmarks, 2]:
            raise ModelError(
                f"{path}: expected output {info.output_name!r} (B, {info.num_landmarks}, 2), got "
                f"{shape}"
            )
        if info.confidence is not None:
            name = info.confidence.output_name
            if name not in outputs or len(outputs[name].shape) != 1:
                shapes = {n: o.shape for n, o in outputs.items()}
                raise ModelError(
                    f"{path}: dan.confidence names the output {name!r}, expected float32 (B,); "
                    f"the graph's outputs are {shapes}"
                )

    def padded_size(self, count: int) -> int:
        """The batch size a batch of ``count`` crops runs as."""
        if not 1 <= count <= self.max_batch_size:
            raise ValueError(f"a batch holds 1 to {self.max_batch_size} crops, got {count}")
        return next(size for size in self.batch_sizes if size >= count)

    def run(self, crops: Sequence[GrayImage]) -> list[FloatArray]:
        """Landmarks (68, 2) in crop pixels for each crop (S, S) uint8; ``RuntimeError`` if the
        model's output for any of them is not finite."""
        outcomes = self.run_faces(crops)
        failed = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
        if failed:
            raise RuntimeError(
                f"model returned non-finite landmarks for {len(failed)} of {len(crops)} crops "
                f"(crops {failed})"
            )
        return [outcome.landmarks for outcome in outcomes if not isinstance(outcome, Exception)]

    def run_faces(self, crops: Sequence[GrayImage]) -> list[FaceOutput | Exception]:
        """Like ``run``, one outcome per crop: its landmarks and confidence, or a
        ``NonFiniteOutputError`` for a crop whose landmarks (or confidence) are not finite (that
        crop alone fails, not the batch)."""
        count = len(crops)
        if count == 0:
            return []
        size = self.info.input_size
        batch = np.zeros((self.padded_size(count), 1, size, size), dtype=np.float32)
        for i, crop in enumerate(crops):
            if crop.shape != (size, size):
                raise ValueError(f"crop {i}: expected ({size}, {size}), got {crop.shape}")
            batch[i, 0] = crop
        landmarks, confidence = self._infer(batch, count)
        if self.mirror_average:
            mirrored, mirrored_confidence = self._infer(
                np.ascontiguousarray(batch[..., ::-1]), count
            )
            landmarks = mirror_average(landmarks, mirrored, size)
            if confidence is not None and mirrored_confidence is not None:
                confidence = 0.5 * (confidence + mirrored_confidence)
        scores: list[float | None] = (
            [None] * count if confidence is None else [float(c) for c in confidence]
        )
        return [
            FaceOutput(points, score)
            if np.isfinite(points).all() and (score is None or np.isfinite(score))
            else NonFiniteOutputError(
                "the model's landmarks for this face are not finite (NaN or infinite); "
                "expected finite pixel coordinates"
                if not np.isfinite(points).all()
                else "the model's confidence for this face is not finite (NaN or infinite); "
                "expected a number in [0, 1]"
            )
            for points, score in zip(landmarks, scores, strict=True)
        ]

    def _infer(
        self, batch: npt.NDArray[np.float32], count: int
    ) -> tuple[FloatArray, FloatArray | None]:
        """One run of a padded batch (P, 1, S, S): landmarks (count, 68, 2) and confidence
        (count,) or None, of its first ``count`` crops."""
        output, confidence = (
            self._run_bound(batch) if self.use_io_binding else self._run_plain(batch)
        )
        landmarks = np.asarray(output[:count], dtype=np.float64)
        if landmarks.shape != (count, self.info.num_landmarks, 2):
            raise RuntimeError(
                f"model returned {landmarks.shape} for {count} crops, expected "
                f"({count}, {self.info.num_landmarks}, 2)"
            )
        scores = None if confidence is None else np.asarray(confidence[:count], dtype=np.float64)
        return landmarks, scores

    def _output_names(self) -> list[str]:
        names = [self.info.output_name]
        return names if self.confidence_name is None else [*names, self.confidence_name]

    def _run_plain(
        self, batch: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        outputs = self.session.run(self._output_names(), {self.info.input_name: batch})
        confidence = np.asarray(outputs[1], dtype=np.float32) if len(outputs) > 1 else None
        return np.asarray(outputs[0], dtype=np.float32), confidence

    def _run_bound(
        self, batch: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        bound = self._bound.get(len(batch))
        if bound is None:
            bound = self._bind(len(batch))
            self._bound[len(batch)] = bound
        bound.inputs.update_inplace(batch)  # host -> device copy into the bound buffer
        self.session.run_with_iobinding(bound.binding)
        outputs = bound.binding.copy_outputs_to_cpu()
        confidence = np.asarray(outputs[1], dtype=np.float32) if len(outputs) > 1 else None
        return np.asarray(outputs[0], dtype=np.float32), confidence

    def _bind(self, batch_size: int) -> _Bound:
        size, n = self.info.input_size, self.info.num_landmarks
        inputs = ort.OrtValue.ortvalue_from_shape_and_type(
            (batch_size, 1, size, size), np.float32, self.device, self.device_id
        )
        outputs = ort.OrtValue.ortvalue_from_shape_and_type(
            (batch_size, n, 2), np.float32, self.device, self.device_id
        )
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.info.input_name, inputs)
        binding.bind_ortvalue_output(self.info.output_name, outputs)
        if self.confidence_name is not None:
            scores = ort.OrtValue.ortvalue_from_shape_and_type(
                (batch_size,), np.float32, self.device, self.device_id
            )
            binding.bind_ortvalue_output(self.confidence_name, scores)
        return _Bound(binding, inputs)

    def warm_up(self, runs: int) -> Warmup:
        """Run a full batch ``runs`` times (on GPU, every tuned batch size too)."""
        started = time.perf_counter()
        size = self.info.input_size
        sizes = self.batch_sizes if self.on_gpu else (self.max_batch_size,)
        for batch_size in sizes:
            crops = [np.full((size, size), WARMUP_GRAY_LEVEL, dtype=np.uint8)] * batch_size
            for _ in range(runs if batch_size == self.max_batch_size else 1):
                self.run(crops)
        warmup = Warmup(tuple(sizes), runs, time.perf_counter() - started)
        log.info(
            "warm-up: batch sizes %s, %d full-batch runs, %.2f s",
            list(warmup.batch_sizes),
            runs,
            warmup.seconds,
        )
        return warmup


def _wanted_provider(settings: Settings) -> ActiveProvider:
    """The provider the settings ask for, checked against what this onnxruntime offers."""
    available = ort.get_available_providers()
    wanted: ActiveProvider
    if settings.provider == "auto":
        wanted = "cuda" if ORT_NAMES["cuda"] in available else "cpu"
    else:
        wanted = settings.provider
    if ORT_NAMES[wanted] not in available:
        raise ProviderError(
            f"provider {settings.provider!r} needs onnxruntime's {ORT_NAMES[wanted]}, but this "
            f"onnxruntime offers {', '.join(available)} (install onnxruntime-gpu for CUDA)"
        )
    return wanted


def _provider_chain(settings: Settings, wanted: ActiveProvider) -> list[Any]:
    """onnxruntime's provider list (with options) for the provider expected to run the graph."""
    if wanted == "cpu":
        return [ORT_NAMES["cpu"]]
    device = str(settings.cuda_device_id)
    cuda = (
        ORT_NAMES["cuda"],
        {
            "device_id": device,
            # Exhaustive search once per input shape: warm-up visits every shape served.
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "do_copy_in_default_stream": "1",
        },
    )
    if wanted == "cuda":
        return [cuda, ORT_NAMES["cpu"]]
    # TensorRT builds one engine for a range of batch sizes: read the input's name and size.
    info = _probe(settings.model_path)
    max_batch = settings.batch_size_for(gpu=True)
    shape = f"1x{info.input_size}x{info.input_size}"
    tensorrt = (
        ORT_NAMES["tensorrt"],
        {
            "device_id": device,
            "trt_fp16_enable": "1" if settings.gpu_fp16 else "0",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": str(Path(tempfile.gettempdir()) / "dan-trt-cache"),
            "trt_profile_min_shapes": f"{info.input_name}:1x{shape}",
            "trt_profile_opt_shapes": f"{info.input_name}:{max_batch}x{shape}",
            "trt_profile_max_shapes": f"{info.input_name}:{max_batch}x{shape}",
        },
    )
    return [tensorrt, cuda, ORT_NAMES["cpu"]]


def _probe(path: Path) -> ModelInfo:
    """A model's metadata, read through an unoptimised CPU session."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=[ORT_NAMES["cpu"]]
        )
    except Exception as e:
        raise ModelError(f"{path} cannot be loaded by onnxruntime: {e}") from None
    return read_model_info(session.get_modelmeta().custom_metadata_map, path)
