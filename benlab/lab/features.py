"""Physical features of a simulated chain: named, deterministic for a seed, comparable across chain lengths.

Exact expectation values come from the state vector; magnetization and randomness come from seeded
Z-basis measurement shots, as they would on a device (that is where the Ising cat state "collapses").
"""

from __future__ import annotations

import functools

import numpy as np

from benlab.lab import simulator as sim

FEATURE_NAMES = (
    "magnetization",  # shot average of the chain's mean Z
    "abs_magnetization",  # shot average of |mean Z|: order seen in each collapsed shot
    "x_magnetization",  # mean <X_i>: paramagnetic order
    "zz_nearest",  # mean <Z_i Z_i+1>
    "zz_long_range",  # mean <Z_i Z_i+N/2>
    "correlation_length_norm",  # connected-ZZ correlation length / (N - 1)
    "string_order",  # <K_1 K_2 ... K_N-2>, K_i = Z_i-1 X_i Z_i+1: the cluster SPT string
    "stabilizer_mean",  # mean <K_i> over the bulk
    "entanglement_norm",  # half-chain entanglement entropy / Page value
    "randomness",  # entropy rate (bits per site) of the measured bit strings
)


def cluster_stabilizer(i: int) -> dict[int, str]:
    return {i - 1: "Z", i: "X", i + 1: "Z"}


@functools.lru_cache(maxsize=None)
def string_operator(n: int) -> tuple[complex, dict[int, str]]:
    """K_1 K_2 ... K_n-2 as one Pauli string, Z Y X ... X Y Z, with its phase."""
    phase, string = 1.0 + 0j, {}
    for i in range(1, n - 1):
        step, string = sim.multiply_paulis(string, cluster_stabilizer(i))
        phase *= step
    return phase, string


def correlation_length(mean_z: np.ndarray, zz: np.ndarray) -> float:
    """Sum over distances r >= 1 of |C(r)| / C(0), C = connected <Z_i Z_i+r>: equals xi for C ~ exp(-r/xi)."""
    n = mean_z.size
    connected = zz - np.outer(mean_z, mean_z)
    c0 = float(np.mean(np.diag(connected)))
    if c0 < 1e-9:  # a fully polarised chain has no fluctuations to correlate
        return 0.0
    return float(sum(abs(np.mean(np.diagonal(connected, offset=r))) for r in range(1, n)) / c0)


def entropy_rate(bits: np.ndarray) -> float:
    """H(b_i+1 | b_i) in bits, pooled over sites and shots: 0 for ordered or frozen strings, 1 for fair coins."""
    pairs = 2 * bits[:, :-1] + bits[:, 1:]
    joint = np.bincount(pairs.reshape(-1), minlength=4) / pairs.size
    first = joint.reshape(2, 2).sum(axis=1)

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    return max(entropy(joint) - entropy(first), 0.0)


def measure(state: np.ndarray, shots: int, rng: np.random.Generator) -> dict[str, float]:
    """All features plus the raw quantities the summary reports (entropies in nats, lengths in sites)."""
    n = state.ndim
    probs = np.abs(state) ** 2
    mean_z, zz = sim.z_correlations(probs, n)
    bits = sim.sample_bitstrings(probs, shots, rng)
    shot_m = 1.0 - 2.0 * bits.mean(axis=1)

    bulk = [sim.site_correlators(state, q) for q in range(1, n - 1)]
    x_values = [2 * float(np.sum(m).real) for m in bulk]
    # End qubits have one neighbour, so site_correlators does not apply; the generic string does.
    x_values += [sim.expectation(state, {0: "X"}), sim.expectation(state, {n - 1: "X"})]
    stabilizers = [2 * float((m[0, 0] - m[0, 1] - m[1, 0] + m[1, 1]).real) for m in bulk]
    phase, string = string_operator(n)
    half = n // 2
    xi = correlation_length(mean_z, zz)
    entropy = sim.half_chain_entropy(state)
    page = sim.page_entropy(n)
    return {
        "magnetization": float(shot_m.mean()),
        "abs_magnetization": float(np.abs(shot_m).mean()),
        "x_magnetization": float(np.mean(x_values)),
        "zz_nearest": float(np.mean(np.diagonal(zz, offset=1))),
        "zz_long_range": float(np.mean(np.diagonal(zz, offset=half))),
        "correlation_length_norm": xi / (n - 1),
        "string_order": sim.expectation(state, string, phase),
        "stabilizer_mean": float(np.mean(stabilizers)),
        "entanglement_norm": entropy / page,
        "randomness": entropy_rate(bits),
        "correlation_length": xi,
        "entanglement_entropy": entropy,
        "page_entropy": page,
    }
