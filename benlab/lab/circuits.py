"""The four phase circuits.

Every experiment starts from |0...0>, prepares its phase's ideal state exactly, then runs `depth` layers. For
`pseudorandom` a layer is a brickwork of Haar-random two-qubit gates; for the other phases it is an idle step of
the device. Every layer ends with a coherent over-rotation error Rx(eta_x) Rz(eta_z) on each qubit, eta ~ N(0,
noise^2) drawn from the seed. With noise = 0 a structured phase's state is its ideal state at any depth.

`bias` b tilts the single-qubit state the circuit starts from, sqrt(b)|0> + sqrt(1-b)|1> (b = 0.5 is |+>):
- trivial_product: that tilted state on every qubit is the final product state (b = 0.5: the paramagnet |+>^N);
- ising_symmetry_breaking: b is the weight of the all-up branch of the cat state sqrt(b)|0..0> + sqrt(1-b)|1..1>;
- spt_cluster: the tilt of each qubit before the CZ entangling layers (b = 0.5: the ideal cluster state);
- pseudorandom: the product state the random brickwork then scrambles.
"""

from __future__ import annotations

import numpy as np

from benlab.lab import simulator as sim

PHASES = ("ising_symmetry_breaking", "spt_cluster", "trivial_product", "pseudorandom")
DEFAULT_BIAS = 0.5
DEFAULT_NOISE = 0.05


def tilt(bias: float) -> np.ndarray:
    """Ry(theta) with Ry|0> = sqrt(bias)|0> + sqrt(1 - bias)|1>."""
    return sim.ry(2.0 * np.arccos(np.sqrt(bias)))


def preparation(phase: str, n: int, bias: float) -> sim.Circuit:
    start = tilt(bias)
    every_qubit_tilted = [[((q,), start) for q in range(n)]]
    if phase == "trivial_product" or phase == "pseudorandom":
        return every_qubit_tilted
    if phase == "ising_symmetry_breaking":
        # Tilt one qubit, then copy it down the chain: the GHZ-like cat state.
        return [[((0,), start)]] + [[((q, q + 1), sim.CNOT)] for q in range(n - 1)]
    if phase == "spt_cluster":
        even = [((q, q + 1), sim.CZ) for q in range(0, n - 1, 2)]
        odd = [((q, q + 1), sim.CZ) for q in range(1, n - 1, 2)]
        return every_qubit_tilted + [even, odd]
    raise ValueError(f"unknown phase {phase!r}; valid phases: {', '.join(PHASES)}")


def brickwork_layer(k: int, n: int, rng: np.random.Generator) -> sim.Layer:
    starts = range(k % 2, n - 1, 2)
    return [((q, q + 1), u) for q, u in zip(starts, sim.haar_unitaries(rng, len(starts), 4))]


def build(phase: str, n: int, depth: int, bias: float, noise: float, seed: int) -> sim.Circuit:
    """The whole circuit. Separate random streams for gates and noise, drawn layer by layer, so a deeper run of
    the same seed repeats the shallower run's layers and then continues (what replay drift compares)."""
    gate_rng = np.random.default_rng([seed, 0])
    # Drawn at once in layer order: the first k layers' errors are the same for any depth >= k.
    eta = noise * np.random.default_rng([seed, 1]).standard_normal((depth, n, 2))
    errors = sim.rx(eta[..., 0]) @ sim.rz(eta[..., 1])
    circuit = preparation(phase, n, bias)
    for k in range(depth):
        layer = brickwork_layer(k, n, gate_rng) if phase == "pseudorandom" else []
        layer += [((q,), errors[k, q]) for q in range(n)]
        circuit.append(layer)
    return circuit
