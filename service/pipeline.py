"""One request's way through the service: decode, find faces, crop, queue, map back.

Decoding, face detection and cropping run in a bounded thread pool, inference
on the batching queue, reached through the request's admission (``service.admission``),
which decides whether its faces are queued. Strategies that ask for another pass (the box-less
procedure) get their re-fitted crops queued again until they are done.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from model.arrays import FloatArray, GrayImage
from service.admission import Admission, Ticket
from service.cropping import Crop, crop_face, keypoint_crop_transform, to_image, warp_face
from service.errors import InvalidBoxesError, TooManyFacesError
from service.imaging import DecodedImage, ImageLimits, decode_image, header_size
from service.initialisation import DetectorBoxes, FaceProposal, GivenBoxes, Initialiser


@dataclass(frozen=True)
class AlignedFace:
    proposal: FaceProposal  # the box of the last pass
    landmarks: FloatArray  # (68, 2) image pixels
    queue_wait_s: float  # all passes
    inference_s: float  # all passes


@dataclass(frozen=True)
class Alignment:
    width: int
    height: int
    faces: list[AlignedFace]
    decode_s: float  # decoding and cropping, waits for a thread included; detection excluded
    detect_s: float | None  # face detection; None when no detector ran


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
        admission: Admission[GrayImage, FloatArray],
        mean_shape: FloatArray,
        input_size: int,
        limits: ImageLimits,
        max_faces: int,
        executor: Executor,
        default_initialiser: Initialiser,
    ) -> None:
        self.admission = admission
        self.mean_shape = mean_shape
        self.input_size = input_size
        self.limits = limits
        self.max_faces = max_faces
        self.executor = executor
        self.default_initialiser = default_initialiser

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
                landmarks = to_image(result.value, item.crop)
                refined = initialiser.refine(item.proposal, landmarks, item.passes)
                if refined is None:
                    done[item.index] = AlignedFace(
                        item.proposal, landmarks, item.queue_wait_s, item.inference_s
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
        faces = [done[i] for i in sorted(done)]
        return Alignment(decoded.width, decoded.height, faces, decode_s, detect_s)

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
        proposals = proposals[: self.max_faces]
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

    def _crops(self, gray: GrayImage, proposals: Sequence[FaceProposal]) -> list[Crop]:
        return [self._crop(gray, p) for p in proposals]

    def _crop(self, gray: GrayImage, proposal: FaceProposal) -> Crop:
        if proposal.crop_from == "keypoints" and proposal.keypoints is not None:
            transform = keypoint_crop_transform(proposal.keypoints, self.mean_shape)
            return warp_face(gray, transform, self.input_size)
        return crop_face(gray, proposal.box, self.mean_shape, self.input_size)
