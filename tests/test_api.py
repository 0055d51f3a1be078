"""The HTTP API, over real HTTP to a lab server started for the test session."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benlab.api import MAX_BODY_BYTES, create_app
from benlab.lab import circuits


def post(url, path, body):
    return requests.post(f"{url}{path}", json=body, timeout=60)


def test_root_and_health(lab_url):
    root = requests.get(lab_url, timeout=5).json()
    assert root["service"] == "Jarvis Lab API" and "/run_phase_experiment" in root["endpoints"]
    health = requests.get(f"{lab_url}/health", timeout=5).json()
    assert health["status"] == "healthy" and health["lab"] == "operational"
    assert requests.get(f"{lab_url}/docs", timeout=5).status_code == 200


def test_phase_experiment_contract_and_byte_identical_responses(lab_url):
    body = {"phase_type": "spt_cluster", "system_size": 10, "depth": 6, "seed": 9, "bias": 0.5}
    first, second = post(lab_url, "/run_phase_experiment", body), post(lab_url, "/run_phase_experiment", body)
    assert first.status_code == 200 and first.content == second.content
    data = first.json()
    assert set(data) >= {"experiment_id", "phase_type", "feature_vector", "summary", "params", "feature_names"}
    assert len(data["feature_vector"]) == len(data["feature_names"])
    # The original lab's summary keys.
    assert set(data["summary"]) >= {"magnetization", "entropy_proxy", "correlation_length", "string_order",
                                    "randomness_score"}
    assert data["summary"]["string_order"] > 0.8


def test_bias_is_optional(lab_url):
    response = post(lab_url, "/run_phase_experiment", {"phase_type": "trivial_product", "system_size": 6, "depth": 2, "seed": 1})
    assert response.status_code == 200 and response.json()["params"]["bias"] == circuits.DEFAULT_BIAS


def test_experiment_lookup_and_replay(lab_url):
    data = post(lab_url, "/run_phase_experiment", {"phase_type": "pseudorandom", "system_size": 8, "depth": 4, "seed": 2}).json()
    stored = requests.get(f"{lab_url}/experiments/{data['experiment_id']}", timeout=5).json()
    assert stored == data
    replay = requests.post(f"{lab_url}/replay/{data['experiment_id']}", timeout=30).json()
    assert replay["identical"] is True and replay["max_abs_difference"] == 0.0
    missing = requests.get(f"{lab_url}/experiments/exp-0000000000000000", timeout=5)
    assert missing.status_code == 404 and "run_phase_experiment" in missing.json()["detail"]


def test_tri_contract(lab_url):
    data = post(lab_url, "/tri", {"phase_type": "ising_symmetry_breaking", "system_size": 8, "depth": 4, "seed": 1}).json()
    assert set(data) >= {"forward_id", "reverse_id", "forward_features", "reverse_features", "TRI", "params",
                         "loschmidt_echo"}
    assert data["params"]["bias"] == 0.7
    assert requests.get(f"{lab_url}/experiments/{data['reverse_id']}", timeout=5).json()["params"]["bias"] == 0.3


def test_replay_drift_contract(lab_url):
    body = {"phase_type": "pseudorandom", "system_size": 8, "base_depth": 2, "seed": 3, "depth_factors": [1, 2, 3]}
    data = post(lab_url, "/replay_drift", body).json()
    assert data["phase_type"] == "pseudorandom" and data["base_depth"] == 2
    assert [r["depth"] for r in data["runs"]] == [2, 4, 6]
    assert data["runs"][0]["drift"] == 0.0 and {"id", "features", "drift", "depth"} <= set(data["runs"][1])
    assert data["drift_trend"] in {"flat", "grows", "saturates"}


def test_discovery_contract(lab_url):
    body = {"phases": ["ising_symmetry_breaking", "trivial_product"], "num_per_phase": 5, "iterations": 25}
    data = post(lab_url, "/discovery", body).json()
    assert data["num_samples"] == 10 and data["num_clusters"] == 2
    assert data["purity"] == 1.0 and data["adjusted_rand_index"] == 1.0
    assert data["cluster_label_stats"] == [{"ising_symmetry_breaking": 5}, {"trivial_product": 5}]


@pytest.mark.parametrize(
    "path, body, needle",
    [
        ("/run_phase_experiment", {"phase_type": "plasma"}, "ising_symmetry_breaking"),
        ("/run_phase_experiment", {"phase_type": "spt_cluster", "system_size": 32}, "less than or equal to 20"),
        ("/run_phase_experiment", {"phase_type": "spt_cluster", "depth": 0}, "greater than or equal to 1"),
        ("/run_phase_experiment", {"phase_type": "spt_cluster", "bias": 1.5}, "less than or equal to 1"),
        ("/run_phase_experiment", {"phase_type": "spt_cluster", "system_size": 20, "depth": 64}, "work limit"),
        ("/discovery", {"num_per_phase": 1000}, "less than or equal to 100"),
        ("/replay_drift", {"phase_type": "spt_cluster", "base_depth": 32, "depth_factors": [1, 4]}, "depth_factors"),
    ],
)
def test_bad_input_gets_422_that_names_the_limit(lab_url, path, body, needle):
    response = post(lab_url, path, body)
    assert response.status_code == 422
    assert needle in response.text


NUMERIC_FIELDS = [("/run_phase_experiment", {"phase_type": "spt_cluster"}, f) for f in
                  ("system_size", "depth", "seed", "bias", "noise", "shots")] + \
                 [("/tri", {}, f) for f in ("system_size", "depth", "seed", "bias", "noise", "shots")] + \
                 [("/replay_drift", {"phase_type": "pseudorandom"}, f) for f in ("system_size", "base_depth", "bias", "noise")] + \
                 [("/discovery", {}, f) for f in ("num_per_phase", "k", "iterations", "system_size", "depth", "noise")]


@pytest.mark.parametrize("path, body, field", NUMERIC_FIELDS)
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_get_422_naming_the_field(lab_url, path, body, field, number):
    text = '{' + ", ".join([f'"{k}": "{v}"' for k, v in body.items()] + [f'"{field}": {number}']) + '}'
    response = requests.post(f"{lab_url}{path}", data=text, headers={"content-type": "application/json"}, timeout=10)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_malformed_json_and_oversized_bodies(lab_url):
    bad = requests.post(f"{lab_url}/run_phase_experiment", data=b"{not json", headers={"content-type": "application/json"}, timeout=5)
    assert bad.status_code == 422
    huge = requests.post(f"{lab_url}/discovery", data=b"[" + b"1," * MAX_BODY_BYTES + b"1]",
                         headers={"content-type": "application/json"}, timeout=5)
    assert huge.status_code == 413

    def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    streamed = requests.post(f"{lab_url}/run_phase_experiment", data=chunks(), headers={"content-type": "application/json"}, timeout=5)
    assert streamed.status_code == 413


def test_eight_concurrent_clients(lab_url):
    bodies = [{"phase_type": circuits.PHASES[i % 4], "system_size": 10, "depth": 8, "seed": i} for i in range(48)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda b: post(lab_url, "/run_phase_experiment", b), bodies))
    assert [r.status_code for r in responses] == [200] * 48
    sequential = post(lab_url, "/run_phase_experiment", bodies[5])
    assert sequential.content == responses[5].content


schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz_never_500(case):
    response = case.call()
    assert response.status_code < 500, response.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(json_values, st.integers(-(2**70), 2**70), st.sampled_from(circuits.PHASES))


@given(path=st.sampled_from(["/run_phase_experiment", "/tri", "/discovery", "/replay_drift"]),
       body=st.one_of(json_values, st.dictionaries(
           st.sampled_from(["phase_type", "system_size", "depth", "seed", "bias", "noise", "shots", "phases",
                            "num_per_phase", "k", "iterations", "base_depth", "depth_factors"]), field_values)))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_arbitrary_json_never_500(lab_url, path, body):
    response = post(lab_url, path, body)
    assert response.status_code in (200, 422), response.text
