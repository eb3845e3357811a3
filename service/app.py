"""The FastAPI application: routes, start-up and shutdown, and error answers.

``create_app(settings)`` builds the app; it is also the composition root: the
engine, the face finder for requests without boxes (``initialiser``) and what
the app does to stop itself can be passed in prebuilt, else they are built from
the settings. Its lifespan loads the model and the face detector (a bad file or
missing weights stop start-up), then warms them up in the background (the model
with full batches, the detector with one blank image): ``/health/live`` answers
at once, ``/health/ready`` only after warm-up, when the batching worker starts
and admission (``service.admission``, the one owner of admission and deadlines)
opens. On shutdown (SIGTERM) the server stops taking connections and finishes
the requests in flight, then admission closes, the queue is drained and the
worker stops. A model that fails in warm-up stops the service: by default the
app raises SIGTERM in its own process, so the server shuts down (``python -m
service`` then exits with 1). Every error is answered as ``{"error": reason,
"detail": ...}`` with the status of ``service.errors.HTTP_STATUS``; failures of
the batching queue as ``service.errors.BATCHING_ERRORS`` says.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.arrays import GrayImage
from model.pose import estimate_pose
from service import demo_page, docs, imaging, streaming, uploads
from service.admission import Admission, Limits, Ticket
from service.auth import ApiKeyMiddleware, ApiKeys, Guard, document_security
from service.batching import Batcher, BatchingError
from service.config import DEFAULT_MAX_BATCH_CPU, DEFAULT_MAX_BATCH_GPU, Settings
from service.detectors import factory as detectors
from service.engine import Engine, FaceOutput, Warmup
from service.errors import (
    RETRY_LATER_STATUSES,
    UNSENT_STATUSES,
    BodyTooLargeError,
    ClientClosedError,
    InternalError,
    InvalidRequestError,
    MalformedBodyError,
    MethodNotAllowedError,
    NotFoundError,
    ServiceError,
    StartupError,
    from_batching,
    http_status,
    log_level,
    reasons_by_status,
)
from service.http_server import CloseUnreadBodies
from service.imaging import ImageLimits
from service.initialisation import Initialiser
from service.log_limit import LogLimiter
from service.metrics import RequestMetricsMiddleware, ServiceMetrics
from service.pipeline import Aligner, Alignment
from service.schemas import (
    BOXES_DESCRIPTION,
    AlignJsonRequest,
    AlignResponse,
    ErrorResponse,
    Face,
    FaceTimings,
    ImageSize,
    Liveness,
    ModelRef,
    Pose,
    Readiness,
)

log = logging.getLogger(__name__)

ALIGN = "/align"
LIVE = "/health/live"
READY = "/health/ready"
METRICS = "/metrics"
LANDMARK_DECIMALS = 3  # 0.001 px


@dataclass
class ServiceState:
    """What the lifespan builds and the routes use."""

    settings: Settings
    metrics: ServiceMetrics
    stop_service: Callable[[], None]
    admission: Admission[GrayImage, FaceOutput]
    decode_pool: ThreadPoolExecutor | None = None
    engine: Engine | None = None
    initialiser: Initialiser | None = None
    batcher: Batcher[GrayImage, FaceOutput] | None = None
    aligner: Aligner | None = None
    warmup: Warmup | None = None
    fatal: BaseException | None = None  # why the service stopped itself


def _raise_sigterm() -> None:
    signal.raise_signal(signal.SIGTERM)  # the server's own graceful shutdown


def create_app(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    *,
    engine: Engine | None = None,
    initialiser: Initialiser | None = None,
    stop_service: Callable[[], None] = _raise_sigterm,
) -> FastAPI:
    """The align service for ``settings``; metrics go to ``registry`` (a fresh one by default).

    Prebuilt parts replace what the lifespan would build from the settings: ``engine``
    (loaded, not yet warmed up), ``initialiser`` (the face finder of requests without boxes),
    and ``stop_service``, called when warm-up fails (default: SIGTERM to this process).
    """
    metrics = ServiceMetrics(
        registry,
        max_batch_size=settings.max_batch_size or max(DEFAULT_MAX_BATCH_CPU, DEFAULT_MAX_BATCH_GPU),
    )
    state = ServiceState(
        settings=settings,
        metrics=metrics,
        stop_service=stop_service,
        admission=Admission(Limits.from_settings(settings)),
        engine=engine,
        initialiser=initialiser,
    )
    app = FastAPI(
        title="dan-align",
        summary="68 facial landmarks (iBUG scheme) with the Deep Alignment Network",
        version="1",
        lifespan=_lifespan,
        # DAN_DOCS=false: no /docs, /redoc or /openapi.json (404).
        docs_url=None,  # service.docs serves /docs and /redoc, offline
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
        # No redirect to the path with(out) a trailing slash: its Location would be built from
        # the client's Host header. Such a path is 404.
        redirect_slashes=False,
    )
    app.state.service = state
    answers = ErrorAnswers(state)
    _add_routes(app)
    streams = streaming.StreamHub(settings, metrics, _answer, answers.response)
    app.state.streams = streams  # GET /align/stream (service.streaming)
    streaming.add_route(app, streams)
    if settings.docs:
        docs.add_routes(app)
    if settings.demo_page:
        demo_page.add_routes(app)
    _add_error_handlers(app, answers)
    guards = [
        Guard(ALIGN, ApiKeys(settings.align_keys), f"POST {ALIGN}"),
        Guard(METRICS, ApiKeys(settings.metrics_keys), f"GET {METRICS}"),
    ]
    _document_guards(app, guards)
    app.add_middleware(ApiKeyMiddleware, guards=guards, answer=answers.response)
    app.add_middleware(UnexpectedErrorMiddleware, answers=answers)  # inside the metrics
    app.add_middleware(
        RequestMetricsMiddleware,
        metrics=metrics,
        routes={ALIGN, LIVE, READY, METRICS, "/openapi.json", *docs.ROUTES, *demo_page.ROUTES},
    )
    app.add_middleware(CloseUnreadBodies)  # outermost: sees every answer
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    settings = state.settings
    engine = state.engine
    if engine is None:
        try:
            engine = await asyncio.to_thread(Engine, settings)
        except StartupError as e:
            log.error("cannot start: %s", e)
            raise
        state.engine = engine
    info = engine.info
    decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
    state.decode_pool = decode_pool
    state.metrics.set_model(
        info.name, info.version, engine.provider, info.compute_precision, engine.mirror_average
    )
    batcher: Batcher[GrayImage, FaceOutput] = Batcher(
        engine.run_faces,
        max_batch_size=engine.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000.0,
        observer=state.metrics,
    )
    state.batcher = batcher
    state.metrics.track_queue(lambda: batcher.depth, settings.max_queue_size)
    initialiser = state.initialiser
    if initialiser is None:
        try:
            initialiser = await asyncio.to_thread(
                detectors.build_initialiser, settings, engine.provider
            )
        except StartupError as e:
            log.error("cannot start: %s", e)
            raise
        state.initialiser = initialiser
    state.aligner = Aligner(
        state.admission,
        info.mean_shape,
        info.input_size,
        ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        settings.max_faces,
        decode_pool,
        initialiser,
        min_confidence=engine.min_confidence,
        face_order=settings.face_order,
    )
    app.state.streams.attach(state.aligner, ModelRef(name=info.name, version=info.version))
    warm_up = asyncio.create_task(_warm_up(state), name="warm-up")
    try:
        yield
    finally:
        # Streams still open (none under uvicorn, which closes them first): answer what they
        # read, close them with 1001.
        await app.state.streams.close_all(settings.shutdown_timeout_s)
        state.admission.close()
        state.metrics.ready.set(0)
        warm_up.cancel()
        log.info("shutting down: draining %d queued faces", batcher.depth)
        await batcher.stop(timeout=settings.shutdown_timeout_s)
        decode_pool.shutdown(wait=False, cancel_futures=False)  # in-flight requests finish
        log.info("stopped")


async def _warm_up(state: ServiceState) -> None:
    """Warm the decoders and the engine (full batches) up, then start the worker: ready."""
    assert state.engine is not None and state.batcher is not None
    try:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(state.decode_pool, imaging.warm_up)
        if state.aligner is not None:
            await loop.run_in_executor(
                state.decode_pool, detectors.warm_up, state.aligner.default_initialiser
            )
            await loop.run_in_executor(state.decode_pool, state.aligner.warm_up)
        state.warmup = await asyncio.to_thread(state.engine.warm_up, state.settings.warmup_runs)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.critical("warm-up failed, stopping the service: %s", e, exc_info=True)
        state.fatal = e
        state.stop_service()
        return
    state.batcher.start()
    state.admission.open(state.batcher)
    state.metrics.ready.set(1)
    log.info(
        "ready: %s %s on %s",
        state.engine.info.name,
        state.engine.info.version,
        state.engine.provider,
    )


def _service(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


ALIGN_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "minLength": 1,
                            "description": "The image file (JPEG, PNG, WebP, BMP, GIF or TIFF); "
                            "at most DAN_MAX_IMAGE_BYTES (default 10 MiB) and DAN_MAX_IMAGE_PIXELS "
                            "(default 40 million) pixels",
                        },
                        "boxes": {
                            "type": "string",
                            "description": "JSON text: a list of boxes, or null. "
                            + BOXES_DESCRIPTION,
                            "example": "[[60.5, 72.0, 190.0, 201.5]]",
                        },
                    },
                }
            },
            "application/json": {"schema": AlignJsonRequest.model_json_schema()},
        },
    }
}


def _document_guards(app: FastAPI, guards: list[Guard]) -> None:
    """``/openapi.json`` states the API keys the guards require (``service.auth``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_security(generate(), guards)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _error_responses() -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    for status, reasons in sorted(reasons_by_status().items()):
        if status in (404, 405) or status in UNSENT_STATUSES:
            continue
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": "error: " + ", ".join(reasons),
        }
        if status in RETRY_LATER_STATUSES:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (DAN_RETRY_AFTER_S)",
                    "schema": {"type": "integer"},
                }
            }
        responses[status] = entry
    return responses


def _add_routes(app: FastAPI) -> None:
    @app.post(
        ALIGN,
        response_model=AlignResponse,
        responses=_error_responses(),
        openapi_extra=ALIGN_REQUEST_BODY,
        summary="68 landmarks for each face of an image",
        description=(
            "Send the image as multipart/form-data (file field `image`, optional text field "
            "`boxes`) or as JSON (`image` in base64, optional `boxes`). Faces from concurrent "
            "requests are batched; a full queue (queue_full) or too long a wait for inference "
            "(queue_wait_too_long) answers 503 with Retry-After at once; a body that does not "
            "arrive within DAN_BODY_TIMEOUT_MS gets 408; a request not answered within "
            "DAN_REQUEST_DEADLINE_MS of its body's arrival gets 504."
        ),
    )
    async def align(request: Request) -> AlignResponse:
        state = _service(request)
        loop = asyncio.get_running_loop()
        started = loop.time()
        state.admission.check_door()  # before the body: a refusal costs nothing
        media = uploads.media_type(request.headers)
        body = await uploads.read_body(
            request,
            uploads.body_limit(media, state.settings.max_image_bytes),
            state.settings.body_timeout_ms / 1000.0,
        )
        # Only a request whose body is in takes a place (a slow upload takes none).
        async with state.admission.admit() as ticket:
            alignment = await _unless_disconnected(
                request, _parse_and_align(request, state, ticket, media, body)
            )
        del body
        assert state.engine is not None
        state.metrics.faces.inc(len(alignment.faces))
        state.metrics.record_confidence(
            alignment.confidences, alignment.flagged, len(alignment.dropped)
        )
        state.metrics.decode_duration.observe(alignment.decode_s)
        if alignment.detect_s is not None:
            state.metrics.detection_duration.observe(alignment.detect_s)
        info = state.engine.info
        return _answer(
            alignment, ModelRef(name=info.name, version=info.version), loop.time() - started
        )

    @app.get(LIVE, response_model=Liveness, summary="The process is up")
    async def live() -> Liveness:
        return Liveness(status="alive")

    @app.get(
        READY,
        response_model=Readiness,
        responses={
            503: {"model": Readiness, "description": "Not ready (loading, warming up, stopping)"}
        },
        summary="The model is loaded and warmed up with a full batch",
    )
    async def ready(request: Request) -> Response:
        state = _service(request)
        engine = state.engine
        if not state.admission.is_open or engine is None or state.warmup is None:
            return JSONResponse(Readiness(status="not_ready").model_dump(), status_code=503)
        body = Readiness(
            status="ready",
            model=ModelRef(name=engine.info.name, version=engine.info.version),
            provider=engine.provider,
            precision=engine.info.compute_precision,
            max_batch_size=engine.max_batch_size,
            mirror_average=engine.mirror_average,
            warmup_batch_sizes=list(state.warmup.batch_sizes),
            warmup_seconds=round(state.warmup.seconds, 4),
        )
        return JSONResponse(body.model_dump())

    @app.get(
        METRICS,
        summary="Prometheus metrics (text format)",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
            401: {
                "model": ErrorResponse,
                "description": "error: unauthorized (DAN_METRICS_API_KEYS is set and no valid "
                "key was sent)",
            },
        },
    )
    async def metrics(request: Request) -> Response:
        registry = _service(request).metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _parse_and_align(
    request: Request, state: ServiceState, ticket: Ticket, media: str, body: bytes
) -> Alignment:
    settings = state.settings
    assert state.aligner is not None
    if media == uploads.MULTIPART:
        upload = await uploads.parse_multipart(request.headers, body, settings.max_image_bytes)
    else:
        loop = asyncio.get_running_loop()
        upload = await loop.run_in_executor(
            state.aligner.executor, uploads.parse_json, body, settings.max_image_bytes
        )
    del body
    return await state.aligner.align(upload.image, upload.boxes, ticket)


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, Alignment]) -> Alignment:
    """The result of ``work`` (started once the body is in), or ``ClientClosedError`` as soon
    as the client disconnects: the work is cancelled, its faces withdrawn from the queue."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    gone = False
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        gone = not task.done()
    finally:
        if not task.done():  # the client has gone (or this request was cancelled)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if gone:
        raise ClientClosedError("the client closed the connection before its answer")
    return task.result()


async def _disconnected(request: Request) -> None:
    """Return once the client has disconnected (after its whole body was read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _answer(alignment: Alignment, model: ModelRef, total_s: float) -> AlignResponse:
    decode_ms = alignment.decode_s * 1000.0
    detect_ms = None if alignment.detect_s is None else round(alignment.detect_s * 1000.0, 3)
    faces = [
        Face(
            box=(
                float(face.proposal.box[0]),
                float(face.proposal.box[1]),
                float(face.proposal.box[2]),
                float(face.proposal.box[3]),
            ),
            box_source=face.proposal.source,
            score=face.proposal.score,
            landmarks=[(float(x), float(y)) for x, y in face.landmarks.round(LANDMARK_DECIMALS)],
            confidence=None if face.confidence is None else round(face.confidence, 4),
            status=face.status,
            pose=Pose.of(face.pose or estimate_pose(face.landmarks)),
            timings=FaceTimings(
                decode_ms=round(decode_ms, 3),
                detect_ms=detect_ms,
                queue_wait_ms=round(face.queue_wait_s * 1000.0, 3),
                inference_ms=round(face.inference_s * 1000.0, 3),
                total_ms=round(total_s * 1000.0, 3),
            ),
        )
        for face in alignment.faces
    ]
    return AlignResponse(
        image=ImageSize(width=alignment.width, height=alignment.height), model=model, faces=faces
    )


class ErrorAnswers:
    """The one place an error becomes an answer: status, reason, Retry-After, the errors
    metric and one log line (at the level of ``service.errors.log_level``, rate-limited)."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.limiter = LogLimiter(log)

    def response(
        self,
        method: str,
        path: str,
        error: ServiceError,
        *,
        logged: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> JSONResponse:
        """The JSON answer to ``error`` with ``headers`` (e.g. a 405's Allow); ``logged``: its
        line was written already."""
        status = http_status(error)
        self.state.metrics.errors.labels(error.reason).inc()
        headers = dict(headers or {})
        if status in RETRY_LATER_STATUSES:
            headers["Retry-After"] = str(self.state.settings.retry_after_s)
        if not logged:
            self.log(log_level(error), method, path, status, error)
        body = ErrorResponse(error=error.reason, detail=error.message)
        return JSONResponse(body.model_dump(), status_code=status, headers=headers)

    def log(self, level: int, method: str, path: str, status: int, error: ServiceError) -> None:
        if level <= logging.DEBUG:
            log.debug("%s %s -> %d %s: %s", method, path, status, error.reason, error.message)
        else:
            self.limiter.log(
                error.reason,
                level,
                "%s %s -> %d %s: %s",
                method,
                path,
                status,
                error.reason,
                error.message,
            )


class UnexpectedErrorMiddleware:
    """Answers any exception no handler took as 500 ``internal_error``, logged once with its
    traceback (the server is not handed the exception to log a second time)."""

    def __init__(self, app: ASGIApp, answers: ErrorAnswers) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            method, path = scope.get("method", ""), scope.get("path", "")
            self.answers.limiter.log(
                InternalError.reason,
                logging.ERROR,
                "unexpected error on %s %s",
                method,
                path,
                exc_info=exc,
            )
            if started:  # too late for an answer; the server closes the connection
                return
            error = InternalError("unexpected error; the cause is in the service log")
            response = self.answers.response(method, path, error, logged=True)
            await response(scope, receive, send)


def _add_error_handlers(app: FastAPI, answers: ErrorAnswers) -> None:
    def answer(
        request: Request, error: ServiceError, headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        return answers.response(request.method, request.url.path, error, headers=headers)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return answer(request, exc)

    @app.exception_handler(BatchingError)
    async def batching_error(request: Request, exc: BatchingError) -> JSONResponse:
        return answer(request, from_batching(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(request, InvalidRequestError(f"invalid request: {exc.errors()}"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error: ServiceError = NotFoundError(f"no route {request.url.path}")
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            error = MethodNotAllowedError(
                f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
            )
            return answer(request, error, {"Allow": allowed})
        elif exc.status_code == 400:
            error = MalformedBodyError(f"malformed request: {exc.detail}")
        elif exc.status_code == 413:
            error = BodyTooLargeError(f"the request is too large: {exc.detail}")
        else:
            error = InternalError(f"HTTP {exc.status_code}: {exc.detail}")
        return answer(request, error)
