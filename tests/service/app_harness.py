"""The app in-process, built by its composition root with real parts that tests can steer.

``create_app`` takes a prebuilt engine and face finder: here a real ``Engine``
on a real model file whose batches can be held at a gate or made to fail
(``ControlledEngine``), a finder that can be held or made to raise
(``ControlledFinder``), and a model file that answers NaN for an all-black
crop and finite landmarks otherwise (``nan_for_black_model``). ``serve`` runs
the app's lifespan on the test's event loop and sends requests through httpx's
ASGI transport; tests wait for what they can observe (a gate entered, the
queue depth in ``/metrics``, admission's counts) with ``until``, never for a
guessed time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from encoded_images import png as png  # re-exported: the app tests upload with it
from fastapi import FastAPI
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families
from waiting import WAIT_S
from waiting import until as until  # re-exported: the tests of the app wait with it

from model.arrays import FloatArray, GrayImage
from service.app import ServiceState, create_app
from service.config import Settings
from service.engine import Engine, FaceOutput
from service.initialisation import FaceProposal, Initialiser, WholeImage

BASE_URL = "http://dan-align.test"
# The in-process app's settings unless a test says otherwise.
DEFAULTS: dict[str, Any] = {
    "provider": "cpu",
    "cpu_threads": 1,
    "decode_threads": 2,
    "detector": "none",
    "warmup_runs": 1,
    "shutdown_timeout_s": 10,
    "retry_after_s": 7,
}


def settings_for(model: Path, **overrides: Any) -> Settings:
    return Settings(model_path=model, **{**DEFAULTS, **overrides})


class ControlledEngine(Engine):
    """The real engine; its batches can be held at ``gate`` (``hold``/``release``) or fail
    (``fail_with``); it records the size of every batch it ran."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_with: Exception | None = None
        self.batches: list[int] = []

    def hold(self) -> None:
        self.entered.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def run_faces(self, crops: Sequence[GrayImage]) -> list[FaceOutput | Exception]:
        self.batches.append(len(crops))
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise AssertionError("the engine's gate was never opened")
        if self.fail_with is not None:
            raise self.fail_with
        return super().run_faces(crops)


class ControlledFinder:
    """The paper's box-less procedure (``WholeImage``); it can be held at ``gate``
    (``hold``/``release``) or raise (``fail_with``)."""

    def __init__(self) -> None:
        self.inner: Initialiser = WholeImage()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_with: Exception | None = None

    def hold(self) -> None:
        self.entered.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def propose(self, image: GrayImage) -> list[FaceProposal]:
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise AssertionError("the finder's gate was never opened")
        if self.fail_with is not None:
            raise self.fail_with
        return self.inner.propose(image)

    def refine(
        self, proposal: FaceProposal, landmarks: FloatArray, passes_done: int
    ) -> FaceProposal | None:
        return self.inner.refine(proposal, landmarks, passes_done)


def nan_for_black_model(like: Path, engine: Engine, path: Path) -> Path:
    """A model with the metadata of ``like`` (``engine`` serves it) whose landmarks are the
    mean shape for a crop with some light and NaN for an all-black one: mean shape + 0 x
    log(mean pixel)."""
    info = engine.info
    size = info.input_size
    mean_shape = info.mean_shape.astype(np.float32)
    images = helper.make_tensor_value_info(
        info.input_name, TensorProto.FLOAT, ["batch", 1, size, size]
    )
    landmarks = helper.make_tensor_value_info(
        info.output_name, TensorProto.FLOAT, ["batch", len(mean_shape), 2]
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", [images.name], ["mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["mean", "per_face"], ["mean_3d"]),
            helper.make_node("Log", ["mean_3d"], ["log"]),  # -inf for a black crop
            helper.make_node("Mul", ["log", "zero"], ["nothing_or_nan"]),
            helper.make_node("Add", ["nothing_or_nan", "mean_shape"], [landmarks.name]),
        ],
        "nan_for_black",
        [images],
        [landmarks],
        initializer=[
            numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "per_face"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(mean_shape, "mean_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for entry in onnx.load(str(like)).metadata_props:
        model.metadata_props.add(key=entry.key, value=entry.value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@dataclass
class Served:
    """A running in-process app: its client, state, and what stopped it (if it did)."""

    app: FastAPI
    client: httpx.AsyncClient
    lifespan: AbstractAsyncContextManager[None]
    stopped: asyncio.Event
    shutdown: asyncio.Future[bool | None] | None = None

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.app.state.service
        return state

    def start_shutdown(self) -> None:
        """Begin the lifespan's shutdown (what SIGTERM does) without waiting for it."""
        if self.shutdown is None:
            self.shutdown = asyncio.ensure_future(self.lifespan.__aexit__(None, None, None))

    async def shut_down(self) -> None:
        self.start_shutdown()
        assert self.shutdown is not None
        await self.shutdown

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = (await self.client.get("/metrics")).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def metric(self, name: str, **labels: str) -> float:
        return (await self.metrics()).get((name, tuple(sorted(labels.items()))), 0.0)

    async def until_metric(self, name: str, value: float, **labels: str) -> None:
        """Wait until ``/metrics`` shows ``value`` for ``name``."""
        end = time.monotonic() + WAIT_S
        while (seen := await self.metric(name, **labels)) != value:
            assert time.monotonic() < end, f"{name}{labels} stayed {seen}, expected {value}"
            await asyncio.sleep(0.001)

    async def until_ready(self) -> None:
        end = time.monotonic() + WAIT_S
        while (await self.client.get("/health/ready")).status_code != 200:
            assert not self.stopped.is_set(), f"the service stopped itself: {self.state.fatal}"
            assert time.monotonic() < end, "the service never became ready"
            await asyncio.sleep(0.001)


@asynccontextmanager
async def serve(
    settings: Settings,
    engine: Engine | None = None,
    initialiser: Initialiser | None = None,
    ready: bool = True,
) -> AsyncIterator[Served]:
    """The app with these parts, its lifespan started, for the block (``ready``: first wait
    for ``/health/ready``); afterwards it is shut down, if the block has not done it."""
    stopped = asyncio.Event()
    app = create_app(settings, engine=engine, initialiser=initialiser, stop_service=stopped.set)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # 500s answered
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=WAIT_S) as client:
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        served = Served(app, client, lifespan, stopped)
        try:
            if ready:
                await served.until_ready()
            yield served
        finally:
            await served.shut_down()
