"""One request's way through the service: decode, find faces, crop, queue, map back.

Decoding, face detection and cropping run in a bounded thread pool, inference
on the batching queue, reached through the request's admission (``service.admission``),
which decides whether its faces are queued. Strategies that ask for another pass (the box-less
procedure) get their re-fitted crops queued again until they are done. Detected faces come in
the order of DAN_FACE_ORDER (``order_proposals``). Each aligned face gets its head pose
(``model.pose``) and, from a model with a confidence output, its confidence: below the least
confidence (DAN_MIN_CONFIDENCE, default the model's threshold) a detected face is dropped and
any other face is kept with status ``low_confidence`` (``judge``).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from PIL import Image

from model.arrays import FloatArray, GrayImage
from model.pose import HeadPose, estimate_pose
from service.admission import Admission, Ticket
from service.config import FaceOrder
from service.cropping import Crop, crop_face, keypoint_crop_transform, to_image, warp_face
from service.engine import FaceOutput
from service.errors import InvalidBoxesError, TooManyFacesError
from service.imaging import DecodedImage, ImageLimits, decode_image, header_size
from service.initialisation import DetectorBoxes, FaceProposal, GivenBoxes, Initialiser

FaceStatus = Literal["ok", "low_confidence"]


@dataclass(frozen=True)
class AlignedFace:
    proposal: FaceProposal  # the box of the last pass
    landmarks: FloatArray  # (68, 2) image pixels
    queue_wait_s: float  # all passes
    inference_s: float  # all passes
    confidence: float | None = None  # the last pass's; None: the model has no confidence output
    pose: HeadPose | None = None
    status: FaceStatus = "ok"


@dataclass(frozen=True)
class Alignment:
    width: int
    height: int
    faces: list[AlignedFace]
    decode_s: float  # decoding and cropping, waits for a thread included; detection excluded
    detect_s: float | None  # face detection; None when no detector ran
    dropped: list[AlignedFace] = field(default_factory=list)  # detected, below min confidence

    @property
    def confidences(self) -> list[float]:
        """The confidence of every aligned face, dropped ones included."""
        return [f.confidence for f in (*self.faces, *self.dropped) if f.confidence is not None]

    @property
    def flagged(self) -> int:
        """Faces answered with status low_confidence."""
        return sum(f.status == "low_confidence" for f in self.faces)


def order_proposals(proposals: Sequence[FaceProposal], order: FaceOrder) -> list[FaceProposal]:
    """Detected faces by detector score (as they come, best first) or by box area, largest
    first (a stable sort); faces of request boxes and of the box-less procedure keep their
    order."""
    if order == "score" or any(p.source != "detector" for p in proposals):
        return list(proposals)
    return sorted(proposals, key=lambda p: -float((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])))


def judge(
    faces: Sequence[AlignedFace], min_confidence: float | None
) -> tuple[list[AlignedFace], list[AlignedFace]]:
    """(answered, dropped): below ``min_confidence`` a detected face is dropped, any other is
    kept with status low_confidence; without a threshold or a confidence every face is ok."""
    answered, dropped = [], []
    for face in faces:
        if min_confidence is None or face.confidence is None or face.confidence >= min_confidence:
            answered.append(face)
        elif face.proposal.source == "detector":
            dropped.append(face)
        else:
            answered.append(replace(face, status="low_confidence"))
    return answered, dropped


@dataclass
class _Pending:
    index: int
    proposal: FaceProposal
    crop: Crop
    passes: int = 0
    queue_wait_s: float = 0.0
    inference_s: float = 0.0


class Aligner:
    """Aligns the faces of one image; shared by all requests."""

    def __init__(
        self,
        admission: Admission[GrayImage, FaceOutput],
        mean_shape: FloatArray,
        input_size: int,
        limits: ImageLimits,
        max_faces: int,
        executor: Executor,
        default_initialiser: Initialiser,
        *,
        min_confidence: float | None = None,
        face_order: FaceOrder = "score",
    ) -> None:
        self.admission = admission
        self.mean_shape = mean_shape
        self.input_size = input_size
        self.limits = limits
        self.max_faces = max_faces
        self.executor = executor
        self.default_initialiser = default_initialiser
        self.min_confidence = min_confidence
        self.face_order = face_order

    def check_box_count(self, boxes: Sequence[object] | None) -> None:
        if boxes is None:
            return
        if not boxes:
            raise InvalidBoxesError(
                "boxes is empty: send at least one box, or leave boxes out to let the service find "
                "the face"
            )
        if len(boxes) > self.max_faces:
            raise TooManyFacesError(
                f"{len(boxes)} boxes sent; at most {self.max_faces} faces per request "
                "(DAN_MAX_FACES)"
            )

    async def align(
        self, image: bytes, boxes: Sequence[Sequence[float]] | None, ticket: Ticket
    ) -> Alignment:
        """Landmarks for each box (or for the faces the default strategy finds), for the
        admitted request of ``ticket``."""
        self.check_box_count(boxes)
        loop = asyncio.get_running_loop()
        started = loop.time()
        size = header_size(image)  # the header only: what decoding will cost
        if size is not None:
            self.admission.start_preparing(ticket, size[0] * size[1] / 1e6, self._detects(boxes))
        decoded, initialiser, pending, detect_s, work_s = await loop.run_in_executor(
            self.executor, self._prepare, image, boxes
        )
        self.admission.finish_preparing(ticket, work_s)
        decode_s = loop.time() - started - (detect_s or 0.0)
        done: dict[int, AlignedFace] = {}
        while pending:
            results = await self.admission.run(ticket, [p.crop.pixels for p in pending])
            again: list[_Pending] = []
            for item, result in zip(pending, results, strict=True):
                item.passes += 1
                item.queue_wait_s += result.queue_wait_s
                item.inference_s += result.inference_s
                landmarks = to_image(result.value.landmarks, item.crop)
                refined = initialiser.refine(item.proposal, landmarks, item.passes)
                if refined is None:
                    done[item.index] = AlignedFace(
                        item.proposal,
                        landmarks,
                        item.queue_wait_s,
                        item.inference_s,
                        result.value.confidence,
                    )
                else:
                    item.proposal = refined
                    again.append(item)
            if again:
                crops = await loop.run_in_executor(
                    self.executor, self._crops, decoded.gray, [p.proposal for p in again]
                )
                for item, crop in zip(again, crops, strict=True):
                    item.crop = crop
            pending = again
        faces, dropped = judge([done[i] for i in sorted(done)], self.min_confidence)
        if faces:
            try:
                faces = await loop.run_in_executor(self.executor, _with_poses, faces)
            except RuntimeError:  # the pool is shut down (the service stops): finish here
                faces = _with_poses(faces)
        return Alignment(decoded.width, decoded.height, faces, decode_s, detect_s, dropped)

    def _detects(self, boxes: Sequence[Sequence[float]] | None) -> bool:
        """Whether the detector finds the faces of a request with these boxes."""
        return boxes is None and isinstance(self.default_initialiser, DetectorBoxes)

    def _prepare(
        self, image: bytes, boxes: Sequence[Sequence[float]] | None
    ) -> tuple[DecodedImage, Initialiser, list[_Pending], float | None, float]:
        """Decode, propose faces and cut their crops (in the thread pool); the detection
        seconds, and the seconds of all this work (waits for the thread excluded)."""
        started = time.perf_counter()
        decoded = decode_image(image, self.limits)
        initialiser: Initialiser = (
            self.default_initialiser
            if boxes is None
            else GivenBoxes(boxes, decoded.width, decoded.height)
        )
        detect_s: float | None = None  # the detector's own seconds, when one runs
        if isinstance(initialiser, DetectorBoxes):
            proposals, detect_s = initialiser.propose_timed(decoded.gray)
        else:
            proposals = initialiser.propose(decoded.gray)
        proposals = order_proposals(proposals, self.face_order)[: self.max_faces]
        crops = self._crops(decoded.gray, proposals)
        pending = [_Pending(i, p, c) for i, (p, c) in enumerate(zip(proposals, crops, strict=True))]
        return decoded, initialiser, pending, detect_s, time.perf_counter() - started

    def warm_up(self) -> None:
        """Prepare synthetic images of two sizes, with boxes and (with a detector) without, in
        the calling thread, so that admission knows what preparation costs per megapixel
        before the first request."""
        largest = int(min(1024, self.limits.max_pixels**0.5))
        for side in sorted({min(128, largest), largest}):
            ramp = np.linspace(0, 255, side, dtype=np.float64)
            pixels = ((ramp[:, None] + ramp[None, :]) / 2).astype(np.uint8)  # compresses well
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            if len(buffer.getvalue()) > self.limits.max_bytes:
                continue
            box = [side * 0.25, side * 0.25, side * 0.75, side * 0.75]
            for boxes in ([box], None) if self._detects(None) else ([box],):
                *_, seconds = self._prepare(buffer.getvalue(), boxes)
                self.admission.costs.observe(side * side / 1e6, self._detects(boxes), seconds)

    def crops(self, gray: GrayImage, proposals: Sequence[FaceProposal]) -> list[Crop]:
        """The network's crop of each proposal (from its box, or its keypoints), as ``align``
        cuts them (a stream's new faces, ``service.tracking``)."""
        return self._crops(gray, proposals)

    def _crops(self, gray: GrayImage, proposals: Sequence[FaceProposal]) -> list[Crop]:
        return [self._crop(gray, p) for p in proposals]

    def _crop(self, gray: GrayImage, proposal: FaceProposal) -> Crop:
        if proposal.crop_from == "keypoints" and proposal.keypoints is not None:
            transform = keypoint_crop_transform(proposal.keypoints, self.mean_shape)
            return warp_face(gray, transform, self.input_size)
        return crop_face(gray, proposal.box, self.mean_shape, self.input_size)


def _with_poses(faces: Sequence[AlignedFace]) -> list[AlignedFace]:
    """The faces with their head pose (``model.pose``), in the thread pool."""
    return [replace(face, pose=estimate_pose(face.landmarks)) for face in faces]
