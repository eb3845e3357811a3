"""The initialisation strategy for requests without boxes, as the settings ask for it.

``DAN_DETECTOR=none`` keeps the paper's box-less procedure (``WholeImage``);
``centerface`` builds the detector on the engine's kind of device (CUDA when
the engine runs on a GPU, else CPU with ``DAN_CPU_THREADS``) behind
``DetectorBoxes``, which maps its boxes with the calibration the detector
loaded. This is the one module of the package that imports
``service.initialisation`` (to compose the strategy); the detectors, their
interface and their calibration do not, and ``service.initialisation``
imports them.
"""

from __future__ import annotations

import numpy as np

from service.config import Settings
from service.detectors.centerface import CenterFace
from service.initialisation import DetectorBoxes, Initialiser, WholeImage

WARMUP_SHAPE = (480, 640)  # (H, W) of the blank image detected once before ready


def build_initialiser(settings: Settings, engine_provider: str) -> Initialiser:
    """The strategy for box-less requests; ``DetectorError`` if the detector cannot load."""
    if settings.detector == "none":
        return WholeImage()
    providers = ["CPUExecutionProvider"]
    if engine_provider in ("cuda", "tensorrt"):
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    detector = CenterFace(
        threshold=settings.detector_threshold,
        max_side=settings.detector_max_side,
        threads=settings.detector_threads or settings.cpu_thread_count,
        providers=providers,
        device_id=settings.cuda_device_id,
        precision=settings.detector_precision,
    )
    return DetectorBoxes(
        detector,
        max_faces=settings.max_faces,
        min_score=settings.detector_threshold,
        min_size=settings.detector_min_face,
        crop_from=settings.detector_init,
    )


def warm_up(initialiser: Initialiser) -> None:
    """One detection on a blank image, so the first request does not pay for the first run."""
    initialiser.propose(np.zeros(WARMUP_SHAPE, dtype=np.uint8))
