"""The lab's experiments as pure functions of their parameters: phase runs, TRI, replay drift, discovery.

No HTTP here; `benlab.api` validates requests and calls these. Same parameters, same numbers, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from benlab.lab import circuits, clustering, features
from benlab.lab import simulator as sim

MIN_QUBITS = 4
MAX_QUBITS = 20
MAX_DEPTH = 64
# Bounds one request's work (about a second): depth x 2^N, the amplitudes touched (20 qubits -> depth <= 8).
MAX_WORK = 2**23
# Discovery runs many experiments: samples x depth x 2^N is bounded too (4 phases x 20 at N=12, depth 8 is 2^21.3).
MAX_DISCOVERY_WORK = 2**23
DEFAULT_SHOTS = 512
# Loschmidt echo: Z over-rotation (radians) on every qubit after each layer of the reversed circuit.
ECHO_PERTURBATION = 0.01
# Replay drift below this L2 distance counts as no drift at all (features are O(1)).
FLAT_DRIFT = 0.02
SATURATION_RATIO = 0.35
DIGITS = 10  # responses round to this many decimals, far below any physical resolution


@dataclass(frozen=True)
class PhaseParams:
    phase_type: str
    system_size: int = 12
    depth: int = 8
    seed: int = 0
    bias: float = circuits.DEFAULT_BIAS
    noise: float = circuits.DEFAULT_NOISE
    shots: int = DEFAULT_SHOTS


def work_limit_error(system_size: int, depth: int) -> str | None:
    if depth * 2**system_size <= MAX_WORK:
        return None
    return (
        f"system_size={system_size} with depth={depth} exceeds the lab's work limit: depth x 2^system_size must be "
        f"<= {MAX_WORK} (at {system_size} qubits, depth <= {MAX_WORK // 2**system_size})"
    )


def discovery_work_error(samples: int, system_size: int, depth: int) -> str | None:
    if samples * depth * 2**system_size <= MAX_DISCOVERY_WORK:
        return None
    return (
        f"{samples} samples at system_size={system_size}, depth={depth} exceed the lab's discovery work limit: "
        f"samples x depth x 2^system_size must be <= {MAX_DISCOVERY_WORK}; use fewer samples or a smaller system"
    )


def experiment_id(params: PhaseParams) -> str:
    canonical = json.dumps(asdict(params), sort_keys=True)
    return "exp-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def rounded(x: float) -> float:
    return round(float(x), DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0


def simulate(params: PhaseParams) -> tuple[np.ndarray, sim.Circuit]:
    circuit = circuits.build(
        params.phase_type, params.system_size, params.depth, params.bias, params.noise, params.seed
    )
    return sim.run_circuit(sim.zero_state(params.system_size), circuit), circuit


def run_phase_experiment(params: PhaseParams) -> dict:
    """Simulate, measure, and report: feature vector (FEATURE_NAMES order) and a summary with raw units."""
    state, _ = simulate(params)
    measured = features.measure(state, params.shots, np.random.default_rng([params.seed, 2]))
    vector = [rounded(measured[name]) for name in features.FEATURE_NAMES]
    summary = {name: rounded(value) for name, value in measured.items()}
    # The original Jarvis Lab summary keys, kept for its clients.
    summary["entropy_proxy"] = summary["entanglement_norm"]
    summary["randomness_score"] = summary["randomness"]
    return {
        "experiment_id": experiment_id(params),
        "phase_type": params.phase_type,
        "feature_vector": vector,
        "feature_names": list(features.FEATURE_NAMES),
        "summary": dict(sorted(summary.items())),
        "params": asdict(params),
    }


def loschmidt_echo(params: PhaseParams, perturbation: float = ECHO_PERTURBATION) -> float:
    """|<psi0| U'^dagger U |psi0>|^2: run the circuit forward, then backward with a small Rz kick on every qubit
    after each reversed layer, and measure the return probability to |0...0>."""
    forward, circuit = simulate(params)
    n = params.system_size
    kick = [((q,), sim.rz(perturbation)) for q in range(n)]
    backward = sim.run_circuit(forward, [layer + kick for layer in sim.inverse_circuit(circuit)])
    return rounded(abs(backward[(0,) * n]) ** 2)


def tri(params: PhaseParams) -> dict:
    """Time-reversal instability: L2 distance between the features at bias b and 1 - b, same seed."""
    forward = run_phase_experiment(params)
    mirrored = PhaseParams(**{**asdict(params), "bias": rounded(1.0 - params.bias)})
    reverse = run_phase_experiment(mirrored)
    distance = np.linalg.norm(np.subtract(forward["feature_vector"], reverse["feature_vector"]))
    return {
        "forward_id": forward["experiment_id"],
        "reverse_id": reverse["experiment_id"],
        "forward_features": forward["feature_vector"],
        "reverse_features": reverse["feature_vector"],
        "feature_names": list(features.FEATURE_NAMES),
        "TRI": rounded(distance),
        "loschmidt_echo": loschmidt_echo(params),
        "params": asdict(params),
        "experiments": [forward, reverse],
    }


def drift_trend(depths: list[int], drifts: list[float]) -> str:
    """'flat' when no run moved FLAT_DRIFT from the first run; 'saturates' when the drift per added layer in the
    last step is under 0.35x its average over the whole sweep (it levelled off); else 'grows'."""
    if len(drifts) < 2 or max(drifts) < FLAT_DRIFT:
        return "flat"
    if len(drifts) == 2:
        return "grows"
    last_rate = (drifts[-1] - drifts[-2]) / (depths[-1] - depths[-2])
    mean_rate = drifts[-1] / (depths[-1] - depths[0])
    return "saturates" if last_rate < SATURATION_RATIO * mean_rate else "grows"


def replay_drift(params: PhaseParams, depth_factors: list[int]) -> dict:
    """The same seed at depths base x factor; drift = L2 distance of each run's features to the first run's."""
    runs = []
    experiments = []
    for factor in depth_factors:
        result = run_phase_experiment(PhaseParams(**{**asdict(params), "depth": params.depth * factor}))
        experiments.append(result)
        first = experiments[0]["feature_vector"]
        drift = np.linalg.norm(np.subtract(result["feature_vector"], first))
        runs.append(
            {
                "depth": result["params"]["depth"],
                "id": result["experiment_id"],
                "features": result["feature_vector"],
                "drift": rounded(drift),
            }
        )
    return {
        "phase_type": params.phase_type,
        "base_depth": params.depth,
        "runs": runs,
        "feature_names": list(features.FEATURE_NAMES),
        "drift_trend": drift_trend([r["depth"] for r in runs], [r["drift"] for r in runs]),
        "params": {**asdict(params), "depth_factors": list(depth_factors)},
        "experiments": experiments,
    }


def discovery(
    phases: list[str],
    num_per_phase: int,
    k: int | None = None,
    iterations: int = 25,
    system_size: int = 12,
    depth: int = 8,
    seed: int = 0,
    noise: float = circuits.DEFAULT_NOISE,
) -> dict:
    """Unsupervised phase discovery: seeded k-means on the feature vectors of num_per_phase runs of each phase
    (seeds seed .. seed + num_per_phase - 1). The features share an O(1) scale, so they are clustered as they are."""
    labels, vectors = [], []
    for phase in phases:
        for i in range(num_per_phase):
            params = PhaseParams(phase, system_size, depth, seed + i, noise=noise)
            vectors.append(run_phase_experiment(params)["feature_vector"])
            labels.append(phase)
    k = k or len(phases)
    assigned = clustering.kmeans(np.array(vectors), k, iterations, seed)
    clusters = []
    for c in range(k):
        members = [labels[i] for i in np.flatnonzero(assigned == c)]
        counts = {p: members.count(p) for p in phases if p in members}
        majority = max(counts, key=counts.get) if counts else None
        clusters.append(
            {
                "cluster": c,
                "size": len(members),
                "counts": counts,
                "majority_phase": majority,
                "purity": rounded(counts[majority] / len(members)) if members else 0.0,
            }
        )
    # Report clusters in phase order so that the same data always reads the same way.
    clusters.sort(key=lambda c: (phases.index(c["majority_phase"]) if c["majority_phase"] else len(phases), -c["size"]))
    majority_total = sum(max(c["counts"].values(), default=0) for c in clusters)
    return {
        "cluster_label_stats": [c["counts"] for c in clusters],
        "clusters": clusters,
        "num_samples": len(labels),
        "num_clusters": k,
        "phases": list(phases),
        "purity": rounded(majority_total / len(labels)),
        "adjusted_rand_index": rounded(clustering.adjusted_rand_index(labels, assigned)),
        "feature_names": list(features.FEATURE_NAMES),
        "params": {
            "num_per_phase": num_per_phase,
            "k": k,
            "iterations": iterations,
            "system_size": system_size,
            "depth": depth,
            "seed": seed,
            "noise": noise,
        },
    }
