"""Following faces from frame to frame: a stream's tracks, when the detector runs, the frame's faces.

The paper's demo (Kowalski et al., 2017) tracks instead of detecting: the landmarks one
frame gives initialise the next. The crop of a followed face is ``model.crop``'s crop from
a transform (``tracked_crop``): the similarity (``crop_transform``) taking onto the mean
shape an initial shape placed by the face's previous landmarks: the mean shape placed in the
box of those landmarks turned upright (the model's box convention,
``initial_shape_from_box``), then turned back by their rotation. The network thus sees a
followed face as it sees a detected one, in the face's own orientation (fitting the
similarity to the landmarks themselves instead was 0.5 points worse on still faces with
model 1.1.0, and 0.02 worse with 1.2.0, on ``bench.stream``'s test videos). When the face moved between the last two frames, that motion
(the similarity between them) is applied once more first: a face moving steadily is met
where it is, not where it was. One pass of the network per face and frame.

When the detector runs (``Tracker.plan``, ``align_frame``):

- on the first frame, whenever the stream follows no face (new ones may have appeared), and
  on the first frame after the client sent ``boxes`` (they stand in for the detector once):
  the frame is aligned as ``/align`` aligns an image (``Aligner.align``), its faces become
  the tracks;
- every ``redetect_every`` frames, beside the tracking: a followed face that no detection
  overlaps (``MATCH_IOU`` between the detection's box and the box of the face's expected
  landmarks) is dropped, a detection that overlaps no followed face is a new face (aligned
  from the detector's box, as ``/align`` does); the followed faces keep their landmarks, so
  a detection frame does not make the landmarks jump;
- on the same frame, whenever a followed face is lost (``Tracker.lost``): the detector runs
  on the frame, and a detection overlapping where the lost face was takes it over (same
  id); one overlapping no face is a new face.

A followed face is lost:

- with a model that has a confidence output, when its confidence is below the least
  confidence (DAN_MIN_CONFIDENCE, default the model's threshold);
- without one (the fallback), when the face no longer looks like itself: the crop its new
  landmarks cut (the similarity onto the mean shape, ``APPEARANCE_SIZE`` px, normalised)
  correlates less than ``MIN_APPEARANCE_CORRELATION`` with the one of its previous frame (a
  scene cut, the face covered or gone); the periodic detection also drops a face no
  detection finds;
- either way, when most of its landmarks (more than ``MAX_OUTSIDE_FRACTION``) lie outside
  the image, when it became smaller than ``min_face_px`` (DAN_DETECTOR_MIN_FACE) or its size
  jumped by more than ``MAX_SCALE_CHANGE`` in one frame.

With DAN_DETECTOR=none there is no detector: the box-less procedure starts a stream, and
runs again (on the whole frame) only when a face is lost. A face that is lost and not found
again at once ends; a face found later gets a new id, so a face that left the frame and came
back is a new track.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np

from model.arrays import FloatArray, GrayImage
from model.crop import (
    Crop,
    crop_transform,
    initial_shape_from_box,
    to_image,
    warp_crop,
    warp_face,
)
from model.geometry import apply_affine, bounding_box, compose_affine, fit_similarity
from model.landmarks import inter_ocular_distance
from model.pose import estimate_pose
from service.admission import Ticket
from service.batching import Completed
from service.engine import FaceOutput
from service.imaging import decode_image, header_size
from service.initialisation import DetectorBoxes, FaceProposal
from service.pipeline import AlignedFace, Aligner, Alignment, judge, order_proposals
from service.smoothing import LandmarkSmoother, OneEuroParameters

# Why a frame runs the detector (dan_stream_redetections_total's reason; "boxes" aside).
DetectReason = Literal["first_frame", "no_faces", "interval", "boxes", "low_confidence", "lost"]
# Why a followed face was lost.
LostReason = Literal[
    "low_confidence", "appearance", "left_image", "too_small", "scale_jump", "not_detected"
]
# Where a frame's faces came from (dan_stream_frames_total's source).
FrameSource = Literal["track", "detector", "whole_image", "request"]

MATCH_IOU = 0.3  # a detection and a face overlap: this much intersection over union, at least
MAX_OUTSIDE_FRACTION = 0.5  # lost when more of its landmarks than this lie outside the image
MAX_SCALE_CHANGE = 1.5  # lost when its size changes by more than this factor in one frame
MAX_PREDICTED_SHIFT = 0.5  # the prediction moves a face at most this x its inter-ocular distance
APPEARANCE_SIZE = 24  # px: the side of the crop compared from frame to frame
MIN_APPEARANCE_CORRELATION = 0.5  # lost below it (models without a confidence output)
_FRESH: frozenset[DetectReason] = frozenset({"first_frame", "no_faces", "boxes"})


@dataclass(frozen=True)
class StreamOptions:
    """What a client's option messages set (``service.streaming``); ``boxes`` is used once."""

    redetect_every: int
    smoothing: bool
    max_faces: int
    boxes: tuple[tuple[float, ...], ...] | None = None


@dataclass
class Track:
    """One face followed over frames: its id, its last landmarks (the model's, unsmoothed),
    those of the frame before (for the prediction), its look (for the fallback) and its
    smoother."""

    id: int
    landmarks: FloatArray
    smoother: LandmarkSmoother
    previous: FloatArray | None = None
    appearance: FloatArray | None = None
    frames: int = 1  # frames it was followed in

    def predicted(self) -> FloatArray:
        """Where its landmarks are expected in the next frame: the last frame's motion (the
        similarity between the last two) applied once more, the shift capped."""
        if self.previous is None:
            return self.landmarks
        motion = fit_similarity(self.previous, self.landmarks)
        predicted = apply_affine(motion, self.landmarks)
        shift = predicted.mean(axis=0) - self.landmarks.mean(axis=0)
        limit = MAX_PREDICTED_SHIFT * max(float(inter_ocular_distance(self.landmarks)), 1.0)
        length = float(np.linalg.norm(shift))
        if length > limit:
            predicted = predicted - shift * (1.0 - limit / length)
        return np.asarray(predicted)

    def follow(self, landmarks: FloatArray, appearance: FloatArray | None) -> None:
        self.previous = self.landmarks
        self.landmarks = landmarks
        self.appearance = appearance
        self.frames += 1


def iou(a: FloatArray, b: FloatArray) -> float:
    """Intersection over union of two boxes [x_min, y_min, x_max, y_max]."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match(found: Sequence[FloatArray], known: Sequence[FloatArray]) -> dict[int, int]:
    """Found box index -> known box index, greedily by overlap (best first), each pair at
    least ``MATCH_IOU``, each box used once."""
    pairs = sorted(
        ((iou(f, k), i, j) for i, f in enumerate(found) for j, k in enumerate(known)),
        reverse=True,
    )
    matched: dict[int, int] = {}
    used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU:
            break
        if i in matched or j in used:
            continue
        matched[i] = j
        used.add(j)
    return matched


def appearance_of(gray: GrayImage, landmarks: FloatArray, mean_shape: FloatArray) -> FloatArray:
    """How a face looks: the crop its landmarks cut (the similarity onto the mean shape,
    ``APPEARANCE_SIZE`` px), zero mean and unit norm (zeros for a flat crop)."""
    size = APPEARANCE_SIZE
    big = 4 * size  # cut at 4x, then averaged down: no aliasing
    span = float(np.ptp(mean_shape, axis=0).max())
    scale = big / max(span * 1.25, 1.0)  # the face and a margin
    centre = mean_shape.mean(axis=0)
    to_big = np.array(
        [[scale, 0.0, big / 2 - scale * centre[0]], [0.0, scale, big / 2 - scale * centre[1]]]
    )
    transform = compose_affine(to_big, crop_transform(landmarks, mean_shape))
    cut = warp_crop(gray, transform, big)
    pixels = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
    pixels -= pixels.mean()
    norm = float(np.linalg.norm(pixels))
    return np.zeros(size * size) if norm < 1e-6 else (pixels / norm).ravel()


class Tracker:
    """One stream's faces: which frames detect, which track, and the ids (see the module)."""

    def __init__(
        self,
        options: StreamOptions,
        *,
        min_confidence: float | None,
        min_face_px: float,
        smoothing: OneEuroParameters,
        has_detector: bool,
    ) -> None:
        self.options = options
        self.min_confidence = min_confidence
        self.min_face_px = min_face_px
        self.smoothing = smoothing
        self.has_detector = has_detector
        self.tracks: list[Track] = []
        self.frames = 0  # frames handled (answered or failed)
        self.since_detection = 0  # frames since the detector last ran
        self._next_id = 1

    def plan(self) -> DetectReason | None:
        """Why the next frame runs the detector, or None: it only tracks."""
        if self.options.boxes is not None:
            return "boxes"
        if self.frames == 0:
            return "first_frame"
        if not self.tracks:
            return "no_faces"
        if self.has_detector and self.since_detection >= self.options.redetect_every:
            return "interval"
        return None

    def take_boxes(self) -> list[list[float]] | None:
        """The boxes the client sent, once (later detections use the detector again)."""
        boxes = self.options.boxes
        if boxes is None:
            return None
        self.options = replace(self.options, boxes=None)
        return [list(box) for box in boxes]

    def lost(
        self,
        track: Track,
        face: AlignedFace,
        appearance: FloatArray | None,
        width: int,
        height: int,
    ) -> LostReason | None:
        """Why the face ``track`` became in this frame is no longer followed, or None."""
        points = face.landmarks
        if self.min_confidence is not None and face.confidence is not None:
            if face.confidence < self.min_confidence:
                return "low_confidence"
        elif (
            track.appearance is not None
            and appearance is not None
            and float(track.appearance @ appearance) < MIN_APPEARANCE_CORRELATION
        ):
            return "appearance"
        inside = (
            (points[:, 0] >= -0.5)
            & (points[:, 0] <= width - 0.5)
            & (points[:, 1] >= -0.5)
            & (points[:, 1] <= height - 0.5)
        )
        if 1.0 - float(inside.mean()) > MAX_OUTSIDE_FRACTION:
            return "left_image"
        box = bounding_box(points)
        if min(box[2] - box[0], box[3] - box[1]) < self.min_face_px:
            return "too_small"
        before = float(inter_ocular_distance(track.landmarks))
        now = float(inter_ocular_distance(points))
        if before <= 0 or now <= 0 or max(now / before, before / now) > MAX_SCALE_CHANGE:
            return "scale_jump"
        return None

    def restart(self, faces: Sequence[AlignedFace]) -> list[int]:
        """The faces of a frame aligned afresh (``Aligner.align``; at most ``max_faces``, in
        order) become the tracks: one overlapping a followed face keeps its id and smoother,
        the others get new ones. Their ids."""
        kept = list(faces[: self.options.max_faces])
        pairs = match(
            [bounding_box(f.landmarks) for f in kept],
            [bounding_box(t.landmarks) for t in self.tracks],
        )
        outcome = [(self.tracks[pairs[i]] if i in pairs else None, f) for i, f in enumerate(kept)]
        return self.advance([(track, face, None) for track, face in outcome], detected=True)

    def advance(
        self,
        outcome: Sequence[tuple[Track | None, AlignedFace, FloatArray | None]],
        *,
        detected: bool,
    ) -> list[int]:
        """The frame's faces in answer order, each with the track it continues (None: a new
        face) and its look: they are the tracks now (the others ended). Their ids."""
        tracks = []
        for track, face, appearance in outcome:
            if track is None:
                track = Track(self._next_id, face.landmarks, LandmarkSmoother(self.smoothing))
                track.appearance = appearance
                self._next_id += 1
            else:
                track.follow(face.landmarks, appearance)
            tracks.append(track)
        self.tracks = tracks
        self.frames += 1
        self.since_detection = 1 if detected else self.since_detection + 1
        return [track.id for track in tracks]

    def failed(self) -> None:
        """A frame that could not be answered: it counts, the tracks stay as they were."""
        self.frames += 1

    def smoothed(self, ids: Sequence[int], faces: Sequence[AlignedFace]) -> list[AlignedFace]:
        """The faces with their tracks' smoothed landmarks when smoothing is on (their pose
        then left to be fitted to them); each smoother sees every frame, so smoothing turned
        on mid-stream starts from the recent past."""
        by_id = {t.id: t for t in self.tracks}
        out = []
        for track_id, face in zip(ids, faces, strict=True):
            smooth = by_id[track_id].smoother(face.landmarks)
            out.append(
                replace(face, landmarks=smooth, pose=None) if self.options.smoothing else face
            )
        return out


@dataclass(frozen=True)
class FrameFaces:
    """One frame's faces (in answer order), their track ids, where they came from, and why
    the detector ran on it (None: it did not)."""

    alignment: Alignment
    ids: list[int]
    source: FrameSource
    redetection: DetectReason | None


@dataclass
class _Prepared:
    gray: GrayImage
    crops: list[Crop]  # the followed faces', from their expected landmarks
    proposals: list[FaceProposal] = field(default_factory=list)  # the detector's, ordered
    seconds: float = 0.0  # the work, waits for a thread excluded
    detect_s: float | None = None


async def align_frame(
    aligner: Aligner, tracker: Tracker, image: bytes, ticket: Ticket
) -> FrameFaces:
    """The faces of one frame of a stream, for the admitted request of ``ticket`` (the
    refusals of ``/align`` are raised as they are), and the tracks moved on (see the module)."""
    reason = tracker.plan()
    if reason in _FRESH:
        return await _afresh(aligner, tracker, image, ticket, reason)
    detector = aligner.default_initialiser
    detect_now = reason == "interval" and isinstance(detector, DetectorBoxes)
    loop = asyncio.get_running_loop()
    started = loop.time()
    tracks = list(tracker.tracks)
    starts = [track.predicted() for track in tracks]
    admission = aligner.admission
    size = header_size(image)
    if size is not None:
        admission.start_preparing(ticket, size[0] * size[1] / 1e6, detect_now)
    prepared = await loop.run_in_executor(
        aligner.executor, _prepare, aligner, image, starts, detect_now, tracker.options.max_faces
    )
    admission.finish_preparing(ticket, prepared.seconds)
    prepared_s = loop.time() - started
    gray = prepared.gray
    height, width = gray.shape[:2]
    expected = [bounding_box(s) for s in starts]
    # Detections beside the followed faces: those overlapping none are new faces.
    covered = match([p.box for p in prepared.proposals], expected)
    room = max(tracker.options.max_faces - len(tracks), 0)
    fresh = [p for i, p in enumerate(prepared.proposals) if i not in covered][:room]
    crops = prepared.crops + await loop.run_in_executor(
        aligner.executor, aligner.crops, gray, fresh
    )
    results = await admission.run(ticket, [crop.pixels for crop in crops])
    faces = [
        _aligned(proposal, crop, result)
        for proposal, crop, result in zip(
            [FaceProposal(box, "track") for box in expected] + fresh, crops, results, strict=True
        )
    ]
    followed, found = faces[: len(tracks)], faces[len(tracks) :]
    followed, looks = await loop.run_in_executor(
        aligner.executor, _looked_at, gray, followed, aligner.mean_shape
    )
    lost: list[LostReason | None] = [
        tracker.lost(track, face, look, width, height)
        for track, face, look in zip(tracks, followed, looks, strict=True)
    ]
    if detect_now:
        found_at = set(covered.values())
        lost = [r or (None if j in found_at else "not_detected") for j, r in enumerate(lost)]
    redetection: DetectReason | None = "interval" if detect_now else None
    detect_s = prepared.detect_s
    retaken: dict[int, AlignedFace] = {}  # track index -> the detection's face taking it over
    failing = [j for j, r in enumerate(lost) if r is not None and r != "not_detected"]
    if failing:
        why: DetectReason = "low_confidence" if "low_confidence" in lost else "lost"
        if not isinstance(detector, DetectorBoxes):  # the box-less procedure, on the whole frame
            return await _afresh(aligner, tracker, image, ticket, why)
        proposals = prepared.proposals
        if not detect_now:
            redetection = why
            proposals, seconds = await loop.run_in_executor(
                aligner.executor, _detect, aligner, detector, gray, tracker.options.max_faces
            )
            detect_s = seconds
            covered = match([p.box for p in proposals], expected)
        at = {j: i for i, j in covered.items()}
        again = [proposals[at[j]] for j in failing if j in at]
        extra: list[FaceProposal] = []
        if not detect_now:  # this detection's new faces, as many as there is room for
            room = max(tracker.options.max_faces - len(tracks) + len(failing), 0)
            extra = [p for i, p in enumerate(proposals) if i not in covered][:room]
        more = await loop.run_in_executor(aligner.executor, aligner.crops, gray, again + extra)
        outputs = await admission.run(ticket, [crop.pixels for crop in more])
        redone = [_aligned(p, c, r) for p, c, r in zip(again + extra, more, outputs, strict=True)]
        retaking = [j for j in failing if j in at]
        retaken = dict(zip(retaking, redone[: len(again)], strict=True))
        found = found + redone[len(again) :]
    kept_found, dropped = judge(found, aligner.min_confidence)
    retaken_kept, retaken_dropped = judge(list(retaken.values()), aligner.min_confidence)
    answered = {id(face) for face in retaken_kept}  # a detected face is kept as it is, or dropped
    retaken = {j: face for j, face in retaken.items() if id(face) in answered}
    outcome: list[tuple[Track | None, AlignedFace, FloatArray | None]] = []
    for j, (track, face, look) in enumerate(zip(tracks, followed, looks, strict=True)):
        if lost[j] is None:
            outcome.append((track, face, look))
        elif j in retaken:
            outcome.append((track, retaken[j], None))
    room = max(tracker.options.max_faces - len(outcome), 0)
    outcome += [(None, face, None) for face in kept_found[:room]]
    ids = tracker.advance(outcome, detected=redetection is not None)
    faces_out = [face for _, face, _ in outcome]
    decode_s = max(prepared_s - (prepared.detect_s or 0.0), 0.0)
    alignment = Alignment(
        width, height, faces_out, decode_s, detect_s, [*dropped, *retaken_dropped]
    )
    source: FrameSource = "track" if redetection is None else "detector"
    return FrameFaces(alignment, ids, source, redetection)


async def _afresh(
    aligner: Aligner, tracker: Tracker, image: bytes, ticket: Ticket, reason: DetectReason | None
) -> FrameFaces:
    """The frame aligned as ``/align`` aligns an image (the client's boxes, or the default
    strategy): its faces restart the tracks."""
    boxes = tracker.take_boxes() if reason == "boxes" else None
    alignment = await aligner.align(image, boxes, ticket)
    faces = alignment.faces[: tracker.options.max_faces]
    ids = tracker.restart(faces)
    source: FrameSource
    if boxes is not None:
        source = "request"
    elif isinstance(aligner.default_initialiser, DetectorBoxes):
        source = "detector"
    else:
        source = "whole_image"
    return FrameFaces(replace(alignment, faces=faces), ids, source, reason)


def _aligned(proposal: FaceProposal, crop: Crop, result: Completed[FaceOutput]) -> AlignedFace:
    return AlignedFace(
        proposal,
        to_image(result.value.landmarks, crop),
        result.queue_wait_s,
        result.inference_s,
        result.value.confidence,
    )


def _prepare(
    aligner: Aligner, image: bytes, starts: Sequence[FloatArray], detect: bool, max_faces: int
) -> _Prepared:
    """Decode, cut the followed faces' crops, and detect (in a thread)."""
    began = time.perf_counter()
    decoded = decode_image(image, aligner.limits)
    gray = decoded.gray
    crops = [tracked_crop(gray, s, aligner.mean_shape, aligner.input_size) for s in starts]
    prepared = _Prepared(gray, crops)
    detector = aligner.default_initialiser
    if detect and isinstance(detector, DetectorBoxes):
        prepared.proposals, prepared.detect_s = _detect(aligner, detector, gray, max_faces)
    prepared.seconds = time.perf_counter() - began
    return prepared


def _detect(
    aligner: Aligner, detector: DetectorBoxes, gray: GrayImage, max_faces: int
) -> tuple[list[FaceProposal], float]:
    proposals, seconds = detector.propose_timed(gray)
    return order_proposals(proposals, aligner.face_order)[:max_faces], seconds


def _looked_at(
    gray: GrayImage, faces: Sequence[AlignedFace], mean_shape: FloatArray
) -> tuple[list[AlignedFace], list[FloatArray]]:
    """The followed faces with their poses, and their looks (in a thread)."""
    posed = [replace(face, pose=estimate_pose(face.landmarks)) for face in faces]
    return posed, [appearance_of(gray, face.landmarks, mean_shape) for face in faces]


def tracked_initial_shape(landmarks: FloatArray, mean_shape: FloatArray) -> FloatArray:
    """The initial shape of a face expected at ``landmarks``: the mean shape placed in the box
    of the landmarks turned upright (``model.crop``'s box convention), turned back by their
    rotation (that of the similarity taking the mean shape onto them), about their centre."""
    turn = fit_similarity(mean_shape, landmarks)
    angle = math.atan2(turn[1, 0], turn[0, 0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = landmarks.mean(axis=0)
    upright = (landmarks - centre) @ rotation + centre  # turned by -angle
    placed = initial_shape_from_box(mean_shape, bounding_box(upright))
    return np.asarray((placed - centre) @ rotation.T + centre)


def tracked_crop(gray: GrayImage, landmarks: FloatArray, mean_shape: FloatArray, size: int) -> Crop:
    """The crop of a face expected at ``landmarks``: ``model.crop``'s crop through the
    similarity taking its initial shape (``tracked_initial_shape``) onto the mean shape."""
    transform = crop_transform(tracked_initial_shape(landmarks, mean_shape), mean_shape)
    return warp_face(gray, transform, size)


def with_poses(faces: Sequence[AlignedFace]) -> list[AlignedFace]:
    """The faces with the head pose of their landmarks (``model.pose``)."""
    return [replace(face, pose=estimate_pose(face.landmarks)) for face in faces]
