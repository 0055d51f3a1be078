"""The Jarvis Lab HTTP API: pydantic models with bounds at the edge, handlers that call benlab.lab.experiments.

Compatible with the original Jarvis Lab API (same paths, request fields and response keys); the new fields are
additions. Same request, byte-identical response.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from enum import Enum
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from benlab import __version__
from benlab.lab import circuits, experiments
from benlab.lab.experiments import PhaseParams

MAX_BODY_BYTES = 64 * 1024
MAX_REMEMBERED = 10_000  # experiments kept for GET /experiments/{id}; oldest forgotten first
# Requests with less work (amplitudes touched) take a few ms and run on the event loop: on 2 cores the hop to a
# worker thread costs about a millisecond. Larger ones go to the thread pool so the server stays responsive.
INLINE_WORK = 2**17


async def compute(work: int, function, *args):
    if work <= INLINE_WORK:
        return function(*args)
    return await run_in_threadpool(function, *args)

PhaseType = Enum("PhaseType", {p: p for p in circuits.PHASES}, type=str)
Seed = Field(0, ge=0, le=2**32 - 1, description="Seeds the gates, the noise and the measurement shots.")
Bias = Field(
    circuits.DEFAULT_BIAS,
    ge=0.0,
    le=1.0,
    description="Tilt of the starting qubit state sqrt(b)|0> + sqrt(1-b)|1>; 0.5 is |+> (see docs/lab/phases.md).",
)
Noise = Field(
    circuits.DEFAULT_NOISE, ge=0.0, le=0.5, description="Std. dev. (radians) of the coherent error per qubit per layer."
)
SystemSize = Field(
    12, ge=experiments.MIN_QUBITS, le=experiments.MAX_QUBITS, description="Qubits in the chain (exact simulation)."
)
Depth = Field(8, ge=1, le=experiments.MAX_DEPTH, description="Circuit layers after the ideal state is prepared.")


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


def json_safe(value: Any) -> Any:
    """A validation error echoes the input; NaN and infinities have no JSON spelling, so they go back as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


class PhaseExperimentRequest(Strict):
    phase_type: PhaseType
    system_size: int = SystemSize
    depth: int = Depth
    seed: int = Seed
    bias: float | None = Bias
    noise: float = Noise
    shots: int = Field(experiments.DEFAULT_SHOTS, ge=16, le=4096, description="Z-basis measurement shots.")

    @model_validator(mode="after")
    def bounded_work(self):
        if error := experiments.work_limit_error(self.system_size, self.depth):
            raise ValueError(error)
        return self

    def params(self) -> PhaseParams:
        bias = circuits.DEFAULT_BIAS if self.bias is None else self.bias
        return PhaseParams(
            self.phase_type.value, self.system_size, self.depth, self.seed, bias, self.noise, self.shots
        )


class TRIRequest(PhaseExperimentRequest):
    phase_type: PhaseType = PhaseType("ising_symmetry_breaking")
    bias: float = Field(0.7, ge=0.0, le=1.0, description="Forward bias b; the reverse run uses 1 - b.")
    seed: int = Field(42, ge=0, le=2**32 - 1)


class ReplayDriftRequest(Strict):
    phase_type: PhaseType
    system_size: int = SystemSize
    base_depth: int = Field(4, ge=1, le=experiments.MAX_DEPTH)
    seed: int = Seed
    depth_factors: list[int] = Field([1, 2, 4, 8], min_length=1, max_length=8)
    bias: float = Bias
    noise: float = Noise

    @model_validator(mode="after")
    def bounded_depths(self):
        for factor in self.depth_factors:
            depth = self.base_depth * factor
            if factor < 1 or depth > experiments.MAX_DEPTH:
                raise ValueError(
                    f"depth_factors must be >= 1 with base_depth x factor <= {experiments.MAX_DEPTH}; "
                    f"got factor {factor} (depth {depth})"
                )
            if error := experiments.work_limit_error(self.system_size, depth):
                raise ValueError(error)
        return self


class DiscoveryRequest(Strict):
    phases: list[PhaseType] = Field(list(PhaseType), min_length=1, max_length=len(circuits.PHASES))
    num_per_phase: int = Field(20, ge=2, le=100)
    k: int | None = Field(None, ge=1, le=10, description="Clusters; defaults to the number of phases.")
    iterations: int = Field(25, ge=1, le=300, description="KMeans iterations.")
    system_size: int = Field(12, ge=experiments.MIN_QUBITS, le=14)
    depth: int = Field(8, ge=1, le=32)
    seed: int = Seed
    noise: float = Noise

    @model_validator(mode="after")
    def distinct_and_enough(self):
        if len(set(self.phases)) != len(self.phases):
            raise ValueError("phases must not repeat")
        samples = len(self.phases) * self.num_per_phase
        if (self.k or len(self.phases)) > samples:
            raise ValueError(f"k={self.k} is more than the {samples} samples to cluster")
        if error := experiments.discovery_work_error(samples, self.system_size, self.depth):
            raise ValueError(error)
        return self


class PhaseExperimentResponse(BaseModel):
    experiment_id: str
    phase_type: str
    feature_vector: list[float]
    feature_names: list[str]
    summary: dict[str, float]
    params: dict[str, Any]


class TRIResponse(BaseModel):
    forward_id: str
    reverse_id: str
    forward_features: list[float]
    reverse_features: list[float]
    feature_names: list[str]
    TRI: float
    loschmidt_echo: float
    params: dict[str, Any]


class DriftRun(BaseModel):
    depth: int
    id: str
    features: list[float]
    drift: float


class ReplayDriftResponse(BaseModel):
    phase_type: str
    base_depth: int
    runs: list[DriftRun]
    feature_names: list[str]
    drift_trend: str
    params: dict[str, Any]


class Cluster(BaseModel):
    cluster: int
    size: int
    counts: dict[str, int]
    majority_phase: str | None
    purity: float


class DiscoveryResponse(BaseModel):
    cluster_label_stats: list[dict[str, int]]
    clusters: list[Cluster]
    num_samples: int
    num_clusters: int
    phases: list[str]
    purity: float
    adjusted_rand_index: float
    feature_names: list[str]
    params: dict[str, Any]


class ReplayResponse(BaseModel):
    experiment_id: str
    identical: bool
    max_abs_difference: float
    original_features: list[float]
    replayed_features: list[float]


class ExperimentRegistry:
    """Past phase experiments by id (ids are hashes of the parameters), bounded, safe across worker threads."""

    def __init__(self, capacity: int = MAX_REMEMBERED):
        self.capacity = capacity
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, result: dict) -> dict:
        with self._lock:
            self._items[result["experiment_id"]] = result
            self._items.move_to_end(result["experiment_id"])
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return result

    def get(self, experiment_id: str) -> dict:
        with self._lock:
            result = self._items.get(experiment_id)
        if result is None:
            raise HTTPException(
                404, f"no experiment {experiment_id!r} in this lab session; run it with POST /run_phase_experiment"
            )
        return result


class BodySizeLimit:
    """ASGI middleware: a request body over MAX_BODY_BYTES gets 413, whether or not it declares its length.
    The body (at most 64 KiB) is read here first, then handed to the app."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return await too_big(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                return await too_big(scope, receive, send)
            more = message.get("more_body", False)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app() -> FastAPI:
    app = FastAPI(
        title="Jarvis Lab API",
        version=__version__,
        description="Quantum phase experiments on an exact state-vector simulator. See docs/lab/ for the physics.",
    )
    registry = ExperimentRegistry()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler fails with a 500 when the echoed input holds NaN or an infinity.
        return JSONResponse({"detail": json_safe(jsonable_encoder(error.errors()))}, status_code=422)

    endpoints = [
        "/health",
        "/run_phase_experiment",
        "/tri",
        "/discovery",
        "/replay_drift",
        "/experiments/{experiment_id}",
        "/replay/{experiment_id}",
        "/docs",
    ]

    @app.get("/")
    def root() -> dict:
        return {"service": "Jarvis Lab API", "version": __version__, "endpoints": endpoints}

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "healthy",
            "lab": "operational",
            "simulator": "exact state vector (numpy)",
            "phases": list(circuits.PHASES),
            "max_system_size": experiments.MAX_QUBITS,
            "version": __version__,
        }

    @app.post("/run_phase_experiment", response_model=PhaseExperimentResponse)
    async def run_phase_experiment(request: PhaseExperimentRequest) -> dict:
        work = request.depth * 2**request.system_size
        return registry.add(await compute(work, experiments.run_phase_experiment, request.params()))

    @app.post("/tri", response_model=TRIResponse)
    async def tri(request: TRIRequest) -> dict:
        result = await compute(4 * request.depth * 2**request.system_size, experiments.tri, request.params())
        for experiment in result.pop("experiments"):
            registry.add(experiment)
        return result

    @app.post("/replay_drift", response_model=ReplayDriftResponse)
    async def replay_drift(request: ReplayDriftRequest) -> dict:
        params = PhaseParams(
            request.phase_type.value, request.system_size, request.base_depth, request.seed, request.bias, request.noise
        )
        work = sum(request.depth_factors) * request.base_depth * 2**request.system_size
        result = await compute(work, experiments.replay_drift, params, request.depth_factors)
        for experiment in result.pop("experiments"):
            registry.add(experiment)
        return result

    @app.post("/discovery", response_model=DiscoveryResponse)
    async def discovery(request: DiscoveryRequest) -> dict:
        work = len(request.phases) * request.num_per_phase * request.depth * 2**request.system_size
        return await compute(
            work,
            experiments.discovery,
            [p.value for p in request.phases],
            request.num_per_phase,
            request.k,
            request.iterations,
            request.system_size,
            request.depth,
            request.seed,
            request.noise,
        )

    @app.get("/experiments/{experiment_id}", response_model=PhaseExperimentResponse)
    def get_experiment(experiment_id: str) -> dict:
        return registry.get(experiment_id)

    @app.post("/replay/{experiment_id}", response_model=ReplayResponse)
    async def replay(experiment_id: str) -> dict:
        original = registry.get(experiment_id)
        params = PhaseParams(**original["params"])
        replayed = await compute(params.depth * 2**params.system_size, experiments.run_phase_experiment, params)
        difference = max(abs(a - b) for a, b in zip(original["feature_vector"], replayed["feature_vector"]))
        return {
            "experiment_id": experiment_id,
            "identical": replayed == original,
            "max_abs_difference": difference,
            "original_features": original["feature_vector"],
            "replayed_features": replayed["feature_vector"],
        }

    app.add_middleware(BodySizeLimit)
    return app


app = create_app()

