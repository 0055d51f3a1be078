"""Exact state-vector simulation of a qubit chain, in numpy.

A state of n qubits is a complex128 array of shape (2,)*n: axis q is qubit q and index 0 on an axis is |0>
(Z = +1). A circuit is a list of layers; a layer is a list of gates (qubits, matrix). Keeping the layer structure
lets the Loschmidt echo insert its perturbation between layers.
"""

from __future__ import annotations

import functools

import numpy as np

Gate = tuple[tuple[int, ...], np.ndarray]
Layer = list[Gate]
Circuit = list[Layer]

I2 = np.eye(2, dtype=complex)
PAULI_X = np.array([[0, 1], [1, 0]], dtype=complex)
PAULI_Z = np.array([[1, 0], [0, -1]], dtype=complex)
CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=complex)
CZ = np.diag([1, 1, 1, -1]).astype(complex)


# Rotations accept a scalar angle or an array of angles (one 2x2 matrix per angle).
def rx(theta) -> np.ndarray:
    c, s = np.cos(np.asarray(theta) / 2), np.sin(np.asarray(theta) / 2)
    return np.moveaxis(np.array([[c, -1j * s], [-1j * s, c]]), [0, 1], [-2, -1])


def ry(theta) -> np.ndarray:
    c, s = np.cos(np.asarray(theta) / 2), np.sin(np.asarray(theta) / 2)
    return np.moveaxis(np.array([[c, -s], [s, c]], dtype=complex), [0, 1], [-2, -1])


def rz(theta) -> np.ndarray:
    phase = np.exp(0.5j * np.asarray(theta))
    zero = np.zeros_like(phase)
    return np.moveaxis(np.array([[phase.conj(), zero], [zero, phase]]), [0, 1], [-2, -1])


def kron2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """kron of two 2x2 matrices; np.kron's generality costs more than the product itself here."""
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(4, 4)


def haar_unitaries(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """`count` Haar-random unitaries: QR of complex Gaussian matrices with the phases of R's diagonal divided out."""
    z = rng.standard_normal((count, 2, dim, dim))
    q, r = np.linalg.qr((z[:, 0] + 1j * z[:, 1]) / np.sqrt(2))
    d = np.diagonal(r, axis1=1, axis2=2)
    return q * (d / np.abs(d))[:, None, :]


def zero_state(n: int) -> np.ndarray:
    state = np.zeros((2,) * n, dtype=complex)
    state[(0,) * n] = 1.0
    return state


def apply_gate(state: np.ndarray, qubits: tuple[int, ...], matrix: np.ndarray) -> np.ndarray:
    """Apply a gate on neighbouring qubits (q, q+1, ...) as one batched matmul over a (left, 2^k, right) view."""
    n, k, first = state.ndim, len(qubits), qubits[0]
    if qubits != tuple(range(first, first + k)):
        raise ValueError(f"gates act on neighbouring qubits in order, got {qubits}")
    left, right = 2**first, 2 ** (n - first - k)
    view = state.reshape(left, 2**k, right)
    if right >= 16:
        return np.matmul(matrix, view).reshape(state.shape)
    # Few trailing amplitudes: one large product beats `left` tiny batched ones.
    return np.moveaxis(np.tensordot(view, matrix, axes=([1], [1])), 2, 1).reshape(state.shape)


def fuse_single_qubit_gates(gates: list[Gate]) -> list[Gate]:
    """Fold one-qubit gates into the next two-qubit gate on their qubit, or into one gate per qubit at the end:
    the same unitary in far fewer passes over the state."""
    pending: dict[int, np.ndarray] = {}
    fused: list[Gate] = []
    for qubits, matrix in gates:
        if len(qubits) == 1:
            q = qubits[0]
            pending[q] = matrix @ pending.get(q, I2)
            continue
        if len(qubits) != 2:
            raise ValueError(f"gates act on one or two qubits, got {qubits}")
        before = kron2(pending.pop(qubits[0], I2), pending.pop(qubits[1], I2))
        fused.append((qubits, matrix @ before))
    fused.extend(((q,), m) for q, m in sorted(pending.items()))
    return fused


def run_circuit(state: np.ndarray, circuit: Circuit) -> np.ndarray:
    for qubits, matrix in fuse_single_qubit_gates([g for layer in circuit for g in layer]):
        state = apply_gate(state, qubits, matrix)
    return state


def inverse_circuit(circuit: Circuit) -> Circuit:
    return [[(q, m.conj().T) for q, m in reversed(layer)] for layer in reversed(circuit)]


PAULIS = {"I": I2, "X": PAULI_X, "Y": np.array([[0, -1j], [1j, 0]]), "Z": PAULI_Z}


def multiply_paulis(a: dict[int, str], b: dict[int, str]) -> tuple[complex, dict[int, str]]:
    """The product of two Pauli strings as (phase, string), qubit by qubit from the 2x2 matrices."""
    phase, product = 1.0 + 0j, {}
    for q in sorted(set(a) | set(b)):
        m = PAULIS[a.get(q, "I")] @ PAULIS[b.get(q, "I")]
        name = next(k for k, p in PAULIS.items() if abs(np.vdot(p, m)) > 1.0)  # <P, M> = 2 * phase for the match
        phase *= np.vdot(PAULIS[name], m) / 2
        if name != "I":
            product[q] = name
    return phase, product


def expectation(state: np.ndarray, paulis: dict[int, str], phase: complex = 1.0) -> float:
    """<state| phase * P |state> for a Pauli string P: flip the X/Y axes once, then apply the Z/Y signs."""
    flips = tuple(q for q, p in paulis.items() if p in ("X", "Y"))
    image = np.flip(state, axis=flips) if flips else state
    sign = np.ones((1,) * state.ndim)
    for q, p in paulis.items():
        if p in ("Z", "Y"):
            # Z|b> = (-1)^b |b>; Y|b> = i (-1)^b |1-b>, the flip is done, the sign is taken on the output bit.
            factor = np.array([1.0, -1.0]) if p == "Z" else np.array([-1j, 1j])
            sign = sign * factor.reshape([2 if k == q else 1 for k in range(state.ndim)])
    return float((phase * np.vdot(state, sign * image)).real)


def site_correlators(state: np.ndarray, q: int) -> np.ndarray:
    """M[a, c] = sum conj(psi[.., a, 0, c, ..]) psi[.., a, 1, c, ..] around qubit q (neighbours a = q-1, c = q+1).
    <X_q> = 2 Re sum(M) and <Z_q-1 X_q Z_q+1> = 2 Re (M00 - M01 - M10 + M11): one pass gives both."""
    n = state.ndim
    view = state.reshape(2 ** (q - 1), 2, 2, 2, 2 ** (n - q - 2))
    return (view[:, :, 0].conj() * view[:, :, 1]).sum(axis=(0, 3))


def half_chain_entropy(state: np.ndarray) -> float:
    """Von Neumann entropy (nats) of the left half of the chain, from the eigenvalues of its reduced density
    matrix (eigvalsh of rho = M M^dagger is several times faster than the SVD of M at 20 qubits)."""
    n = state.ndim
    m = state.reshape(2 ** (n // 2), -1)
    p = np.linalg.eigvalsh(m @ m.conj().T)
    p = p[p > 1e-15]
    return float(-(p * np.log(p)).sum())


def page_entropy(n: int) -> float:
    """Page's mean half-chain entropy of a Haar-random state: ln d_A - d_A / (2 d_B)."""
    d_a, d_b = 2 ** (n // 2), 2 ** (n - n // 2)
    return float(np.log(d_a) - d_a / (2 * d_b))


@functools.lru_cache(maxsize=32)
def z_signs(n: int) -> np.ndarray:
    """Z eigenvalues (+1 for |0>) of n qubits in every basis state, shape (2^n, n)."""
    index = np.arange(2**n)
    return 1.0 - 2.0 * ((index[:, None] >> (n - 1 - np.arange(n))) & 1)


def z_correlations(probs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """<Z_i> (n,) and <Z_i Z_j> (n, n) from the computational-basis probabilities. The chain is split into high
    and low qubits (at most 16 low) so the sign tables stay small: P[h, l] is the probability of high bits h and
    low bits l, and each block of ZZ is a product of a sign table, P and a sign table."""
    low = min(n, 16)
    high_z, low_z = z_signs(n - low), z_signs(low)
    p = probs.reshape(2 ** (n - low), 2**low)
    p_high, p_low = p.sum(axis=1), p.sum(axis=0)
    mean_z = np.concatenate([p_high @ high_z, p_low @ low_z])
    zz = np.empty((n, n))
    h = n - low
    zz[:h, :h] = (high_z * p_high[:, None]).T @ high_z
    zz[h:, h:] = (low_z * p_low[:, None]).T @ low_z
    zz[:h, h:] = high_z.T @ p @ low_z
    zz[h:, :h] = zz[:h, h:].T
    return mean_z, zz


def sample_bitstrings(probs: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Measure every qubit in the Z basis `shots` times: (shots, n) array of bits (0 = |0>)."""
    n = probs.ndim
    flat = probs.reshape(-1)
    cumulative = np.cumsum(flat)
    outcomes = np.searchsorted(cumulative, rng.random(shots) * cumulative[-1], side="right")
    outcomes = np.minimum(outcomes, flat.size - 1)
    return ((outcomes[:, None] >> (n - 1 - np.arange(n))) & 1).astype(np.int8)
