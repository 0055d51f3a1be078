"""The simulator and the phases against textbook values (no HTTP)."""

import numpy as np
import pytest

from benlab.lab import circuits, clustering, experiments, features
from benlab.lab import simulator as sim
from benlab.lab.experiments import PhaseParams


def ideal(phase, n=12, depth=8, bias=0.5, seed=0):
    state, _ = experiments.simulate(PhaseParams(phase, n, depth, seed, bias, noise=0.0))
    return state


def dense(n, qubits, matrix):
    """The gate as a full 2^n x 2^n matrix (qubit 0 most significant), the slow obvious way."""
    ops = [sim.I2] * n
    if len(qubits) == 1:
        ops[qubits[0]] = matrix
        full = ops[0]
        for op in ops[1:]:
            full = np.kron(full, op)
        return full
    q = qubits[0]
    return np.kron(np.kron(np.eye(2**q), matrix), np.eye(2 ** (n - q - 2)))


def test_apply_gate_matches_dense_matrices():
    rng = np.random.default_rng(1)
    n = 5
    state = rng.standard_normal(2**n) + 1j * rng.standard_normal(2**n)
    state /= np.linalg.norm(state)
    for qubits in [(0,), (2,), (4,), (0, 1), (3, 4)]:
        u = sim.haar_unitaries(rng, 1, 2 ** len(qubits))[0]
        expected = dense(n, qubits, u) @ state
        got = sim.apply_gate(state.reshape((2,) * n), qubits, u).reshape(-1)
        np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("n", [5, 18])
def test_z_correlations_match_a_direct_sum(n):
    probs = np.random.default_rng(n).random(2**n)
    probs /= probs.sum()
    bits = (np.arange(2**n)[:, None] >> (n - 1 - np.arange(n))) & 1
    z = 1.0 - 2.0 * bits
    mean_z, zz = sim.z_correlations(probs.reshape((2,) * n), n)
    np.testing.assert_allclose(mean_z, probs @ z, atol=1e-12)
    np.testing.assert_allclose(zz, (z * probs[:, None]).T @ z, atol=1e-12)


def test_haar_unitaries_are_unitary():
    for u in sim.haar_unitaries(np.random.default_rng(0), 5, 4):
        np.testing.assert_allclose(u @ u.conj().T, np.eye(4), atol=1e-12)


def test_fusing_single_qubit_gates_keeps_the_unitary():
    circuit = circuits.build("pseudorandom", 6, 5, 0.3, 0.2, seed=7)
    gates = [g for layer in circuit for g in layer]
    slow = sim.zero_state(6)
    for qubits, matrix in gates:
        slow = sim.apply_gate(slow, qubits, matrix)
    np.testing.assert_allclose(sim.run_circuit(sim.zero_state(6), circuit), slow, atol=1e-12)
    assert len(sim.fuse_single_qubit_gates(gates)) < len(gates)


def test_pauli_expectations_match_dense_matrices():
    rng = np.random.default_rng(2)
    n = 4
    state = rng.standard_normal((2,) * n) + 1j * rng.standard_normal((2,) * n)
    state /= np.linalg.norm(state)
    for paulis in [{0: "X"}, {3: "Y"}, {1: "Z"}, {0: "Z", 1: "X", 2: "Z"}, {0: "Z", 1: "Y", 2: "Y", 3: "Z"}]:
        matrix = np.eye(1)
        for q in range(n):
            matrix = np.kron(matrix, sim.PAULIS[paulis.get(q, "I")])
        expected = np.vdot(state.reshape(-1), matrix @ state.reshape(-1)).real
        assert sim.expectation(state, paulis) == pytest.approx(expected, abs=1e-12)


def test_pauli_products_and_site_correlators():
    assert sim.multiply_paulis({0: "X"}, {0: "Z"}) == (-1j, {0: "Y"})
    assert sim.multiply_paulis({0: "Z", 1: "X"}, {1: "X", 2: "Z"}) == (1, {0: "Z", 2: "Z"})
    rng = np.random.default_rng(4)
    state = rng.standard_normal((2,) * 5) + 1j * rng.standard_normal((2,) * 5)
    state /= np.linalg.norm(state)
    m = sim.site_correlators(state, 2)
    assert 2 * np.sum(m).real == pytest.approx(sim.expectation(state, {2: "X"}))
    assert 2 * (m[0, 0] - m[0, 1] - m[1, 0] + m[1, 1]).real == pytest.approx(
        sim.expectation(state, features.cluster_stabilizer(2))
    )


def test_inverse_circuit_undoes_the_circuit():
    circuit = circuits.build("spt_cluster", 6, 4, 0.3, 0.1, seed=3)
    back = sim.run_circuit(sim.run_circuit(sim.zero_state(6), circuit), sim.inverse_circuit(circuit))
    assert abs(back[(0,) * 6]) ** 2 == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n", [6, 12])
def test_ideal_cluster_state_has_string_order_and_stabilizers_one(n):
    m = features.measure(ideal("spt_cluster", n), 256, np.random.default_rng(0))
    assert m["string_order"] == pytest.approx(1.0, abs=1e-12)
    assert m["stabilizer_mean"] == pytest.approx(1.0, abs=1e-12)
    assert m["entanglement_entropy"] == pytest.approx(np.log(2), abs=1e-12)


@pytest.mark.parametrize("n", [6, 12])
def test_ideal_ising_cat_state_is_ordered_with_ln2_entanglement(n):
    m = features.measure(ideal("ising_symmetry_breaking", n), 512, np.random.default_rng(0))
    assert m["entanglement_entropy"] == pytest.approx(np.log(2), abs=1e-12)
    assert m["zz_long_range"] == pytest.approx(1.0, abs=1e-12)
    assert m["abs_magnetization"] == pytest.approx(1.0)  # every shot collapses to all-up or all-down
    assert abs(m["magnetization"]) < 0.15  # ... with equal weight at bias 0.5
    assert m["correlation_length_norm"] == pytest.approx(1.0)
    assert m["randomness"] == 0.0


def test_product_state_has_zero_entanglement_and_paramagnetic_order():
    m = features.measure(ideal("trivial_product"), 512, np.random.default_rng(0))
    assert m["entanglement_entropy"] == pytest.approx(0.0, abs=1e-12)
    assert m["x_magnetization"] == pytest.approx(1.0)
    assert m["string_order"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("bias", [0.9, 0.2])
def test_bias_sets_the_tilt(bias):
    m = features.measure(ideal("trivial_product", bias=bias), 4096, np.random.default_rng(0))
    assert m["magnetization"] == pytest.approx(2 * bias - 1, abs=0.03)
    cat = features.measure(ideal("ising_symmetry_breaking", bias=bias), 4096, np.random.default_rng(0))
    assert cat["magnetization"] == pytest.approx(2 * bias - 1, abs=0.05)


def test_deep_random_circuit_reaches_the_page_value():
    n = 12
    state = ideal("pseudorandom", n, depth=2 * n, seed=5)
    page = n / 2 * np.log(2) - 0.5
    assert sim.page_entropy(n) == pytest.approx(page)
    assert sim.half_chain_entropy(state) == pytest.approx(page, rel=0.05)


def test_noise_degrades_order_but_not_entanglement_of_local_errors():
    noisy = experiments.run_phase_experiment(PhaseParams("spt_cluster", 10, 32, 1, noise=0.1))["summary"]
    assert noisy["string_order"] < 0.95
    assert noisy["entanglement_entropy"] == pytest.approx(np.log(2), abs=1e-9)  # single-qubit errors: same Schmidt values


def test_experiments_are_deterministic_and_ids_follow_parameters():
    p = PhaseParams("pseudorandom", 10, 6, 11)
    assert experiments.run_phase_experiment(p) == experiments.run_phase_experiment(p)
    other = PhaseParams("pseudorandom", 10, 6, 12)
    assert experiments.experiment_id(p) != experiments.experiment_id(other)


def test_features_are_named_and_bounded_across_sizes():
    for n in (4, 8, 14):
        for phase in circuits.PHASES:
            result = experiments.run_phase_experiment(PhaseParams(phase, n, 4, 3))
            assert result["feature_names"] == list(features.FEATURE_NAMES)
            assert all(-1.0 - 1e-9 <= v <= 1.1 for v in result["feature_vector"]), (phase, n)


def test_tri_mirrors_the_bias_and_echo_is_a_probability():
    result = experiments.tri(PhaseParams("ising_symmetry_breaking", 10, 8, 42, bias=0.7))
    names = result["feature_names"]
    forward, reverse = result["forward_features"], result["reverse_features"]
    m = names.index("magnetization")
    assert forward[m] > 0.25 and reverse[m] < -0.25
    assert result["TRI"] == pytest.approx(np.linalg.norm(np.subtract(forward, reverse)), abs=1e-9)
    assert 0.0 <= result["loschmidt_echo"] <= 1.0
    unperturbed = experiments.loschmidt_echo(PhaseParams("pseudorandom", 8, 8, 1), perturbation=0.0)
    assert unperturbed == pytest.approx(1.0, abs=1e-9)


def test_replay_drift_trends():
    depths = [4, 8, 16, 32]
    assert experiments.drift_trend(depths, [0.0, 0.0, 0.001, 0.002]) == "flat"
    assert experiments.drift_trend(depths, [0.0, 0.1, 0.3, 0.7]) == "grows"
    assert experiments.drift_trend(depths, [0.0, 0.4, 0.45, 0.44]) == "saturates"
    assert experiments.drift_trend(list(range(1, 9)), [0.1 * k for k in range(8)]) == "grows"  # linear is growth
    saturating = experiments.replay_drift(PhaseParams("pseudorandom", 10, 8, 1), [1, 2, 4, 8])
    assert saturating["drift_trend"] == "saturates"
    flat = experiments.replay_drift(PhaseParams("spt_cluster", 10, 4, 1, noise=0.0), [1, 2, 4])
    assert flat["drift_trend"] == "flat" and all(r["drift"] == 0.0 for r in flat["runs"])
    grows = experiments.replay_drift(PhaseParams("spt_cluster", 10, 4, 1, noise=0.1), [1, 2, 4, 8])
    assert grows["drift_trend"] == "grows"
    assert [r["depth"] for r in grows["runs"]] == [4, 8, 16, 32]


def test_kmeans_recovers_the_four_phases():
    result = experiments.discovery(list(circuits.PHASES), num_per_phase=20, system_size=12, depth=8)
    assert result["adjusted_rand_index"] >= 0.9
    assert result["num_samples"] == 80
    assert sum(sum(c.values()) for c in result["cluster_label_stats"]) == 80


@pytest.mark.parametrize(
    "truth, predicted, expected",
    [  # the values scikit-learn's documentation gives for adjusted_rand_score
        ([0, 0, 1, 1], [0, 0, 1, 1], 1.0),
        ([0, 0, 1, 1], [1, 1, 0, 0], 1.0),
        ([0, 0, 1, 2], [0, 0, 1, 1], 0.571428571),
        ([0, 0, 1, 1], [0, 0, 1, 2], 0.571428571),
        ([0, 0, 0, 0], [0, 1, 2, 3], 0.0),
        ([0, 0, 1, 1], [0, 1, 0, 1], -0.5),
        (["a", "a", "b"], [5, 5, 5], 0.0),
    ],
)
def test_adjusted_rand_index_matches_reference_values(truth, predicted, expected):
    assert clustering.adjusted_rand_index(truth, predicted) == pytest.approx(expected)


def test_kmeans_finds_separated_blobs_and_is_seeded():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    points = np.concatenate([c + 0.3 * rng.standard_normal((15, 2)) for c in centres])
    truth = np.repeat([0, 1, 2], 15)
    labels = clustering.kmeans(points, 3, iterations=25, seed=7)
    assert clustering.adjusted_rand_index(truth, labels) == 1.0
    assert np.array_equal(labels, clustering.kmeans(points, 3, iterations=25, seed=7))
    # More clusters than distinct points still returns a label per point.
    assert len(clustering.kmeans(np.zeros((4, 2)), 3, iterations=5, seed=0)) == 4
