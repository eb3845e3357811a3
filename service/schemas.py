"""The HTTP API's request and response models (their JSON schemas make the OpenAPI document).

Coordinates are pixels of the image as displayed (EXIF orientation applied)
with the centre of the top-left pixel at (0, 0); boxes are
``[x_min, y_min, x_max, y_max]``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from model.landmarks import NUM_LANDMARKS
from model.pose import HeadPose
from service.initialisation import BoxSource

# Past any image the service opens (DAN_MAX_IMAGE_PIXELS <= 150 million, a box at most 4x the
# larger side): the schema says coordinates are finite, as the service checks.
MAX_COORDINATE = 1e9
Coordinate = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)
]
Box = tuple[Coordinate, Coordinate, Coordinate, Coordinate]
Boxes = Annotated[list[Box], Field(min_length=1)]
Point = tuple[float, float]
POSE_DECIMALS = 2

BOXES_DESCRIPTION = (
    "Face boxes [x_min, y_min, x_max, y_max] in pixels of the image as displayed (EXIF "
    "orientation applied). Each must be at least 1 px a side, at most 4x the image's larger side "
    "and overlap the image; at most DAN_MAX_FACES (default 32) boxes. Omit to let the service "
    "find the faces: its face detector (DAN_DETECTOR, default centerface) finds them, best score "
    "first, at most DAN_MAX_FACES; an image without a face gets an empty faces list; null is the "
    "same as leaving boxes out. With "
    "DAN_DETECTOR=none it uses the paper's box-less procedure instead (one face: a centred square "
    "box of side 46% of the image height, then a second pass from the box of the first result)."
)
# ``null`` is no boxes, in a JSON body and in the multipart field alike.
BOXES_ADAPTER: TypeAdapter[list[Box] | None] = TypeAdapter(Boxes | None)


class AlignJsonRequest(BaseModel):
    """``POST /align`` with ``Content-Type: application/json``."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        description="The encoded image file (JPEG, PNG, WebP, BMP, GIF or TIFF) in base64; a "
        "data URL prefix (data:image/...;base64,) is accepted",
        # Checked by the service itself (400 empty_image), stated in the schema.
        json_schema_extra={"minLength": 1},
    )
    boxes: Boxes | None = Field(default=None, description=BOXES_DESCRIPTION)


class ImageSize(BaseModel):
    width: int = Field(description="Width in pixels, as displayed")
    height: int = Field(description="Height in pixels, as displayed")


class ModelRef(BaseModel):
    name: str
    version: str


class FaceTimings(BaseModel):
    """Where the time went, in milliseconds."""

    decode_ms: float = Field(
        description="Decoding the image and cutting the crops, waits for a decode thread included "
        "(per request; face detection excluded)"
    )
    detect_ms: float | None = Field(
        default=None,
        description="Finding the faces with the face detector (per request); null when the "
        "request gave boxes or no detector is set",
    )
    queue_wait_ms: float = Field(description="This face's wait in the inference queue, all passes")
    inference_ms: float = Field(description="Run time of the batches this face was in, all passes")
    total_ms: float = Field(description="From receiving the request to building the answer")


class Pose(BaseModel):
    """Head pose in degrees from the landmarks and a 3D mean face (``model.pose``): scaled
    orthographic camera, image x to the right and y down; all 0 for a frontal face."""

    yaw: float = Field(
        description="Turn about the vertical axis; positive when the face turns toward the "
        "image's right (the subject's left)"
    )
    pitch: float = Field(
        description="Tilt about the horizontal axis; positive when the face turns up"
    )
    roll: float = Field(
        description="Rotation in the image plane; positive clockwise as displayed (the eye on "
        "the image's right lower)"
    )

    @classmethod
    def of(cls, pose: HeadPose) -> Pose:
        return cls(
            yaw=round(pose.yaw, POSE_DECIMALS),
            pitch=round(pose.pitch, POSE_DECIMALS),
            roll=round(pose.roll, POSE_DECIMALS),
        )


class Face(BaseModel):
    box: tuple[float, float, float, float] = Field(
        description="The box the landmarks were found from [x_min, y_min, x_max, y_max]; for "
        "detector, the detector's box mapped to the model's box convention (the 300-W detector "
        "boxes); for whole_image, the box re-fitted for the last pass"
    )
    box_source: BoxSource = Field(
        description="request: the client's box; detector: a face detector's; whole_image: the "
        "box-less procedure"
    )
    score: float | None = Field(
        default=None, description="The detector's confidence (detector boxes only)"
    )
    landmarks: list[Point] = Field(
        min_length=NUM_LANDMARKS,
        max_length=NUM_LANDMARKS,
        description=f"{NUM_LANDMARKS} [x, y] points of the iBUG 68-point scheme, in pixels of the "
        "image as displayed, centre of the top-left pixel at (0, 0)",
    )
    confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="How likely the landmarks are right, in [0, 1] (the model's confidence "
        "output: low for a bad alignment or a box without a face); null when the model file has "
        "no confidence output",
    )
    status: Literal["ok", "low_confidence"] = Field(
        default="ok",
        description="low_confidence: confidence below DAN_MIN_CONFIDENCE (default: the model's "
        "threshold); only faces of request boxes and of the box-less procedure are answered so, "
        "detected faces below it are left out. ok otherwise, and always for a model without a "
        "confidence output",
    )
    pose: Pose = Field(description="Head pose from the landmarks, in degrees")
    timings: FaceTimings


class AlignResponse(BaseModel):
    image: ImageSize
    model: ModelRef
    faces: list[Face] = Field(
        description="One entry per face: in the order of the boxes sent, or for detected faces "
        "best score first (empty when the detector finds none)"
    )


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: str = Field(description="Stable machine-readable reason, e.g. queue_full")
    detail: str = Field(description="What was expected and what came")


class Liveness(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    model: ModelRef | None = None
    provider: str | None = Field(default=None, description="cpu, cuda or tensorrt")
    precision: str | None = Field(
        default=None,
        description="The model file's arithmetic: float32, float16 or int8 (its dan.precision)",
    )
    max_batch_size: int | None = None
    mirror_average: bool | None = Field(
        default=None,
        description="Each face is also run mirrored and answered with the average "
        "(DAN_MIRROR_AVERAGE)",
    )
    warmup_batch_sizes: list[int] | None = Field(
        default=None, description="Batch sizes run during warm-up (the full batch included)"
    )
    warmup_seconds: float | None = None
