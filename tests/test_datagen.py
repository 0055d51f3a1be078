"""The training-data generator against a real lab over HTTP: schema, grounding, determinism, resume, failures."""

import json
import re
from collections import Counter, defaultdict

import pytest
import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from benlab import datagen, samples, tools
from benlab.common import run_main
from benlab.lab_client import LabClient
from tests.conftest import serve

SMALL = ["--phase-experiments", "3", "--tri-tests", "6", "--discovery-runs", "2", "--drift-runs", "4", "--loop-runs", "4",
         "--eval-fraction", "0.5"]
CHECKABLE = ("phase_identification", "tri_comparison", "drift_class")


def generate(url, out_dir, *extra):
    argv = ["--api-url", url, "--out", str(out_dir / "train.jsonl"), "--eval-out", str(out_dir / "eval.jsonl"), *SMALL, *extra]
    return run_main(datagen.main, argv)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def campaign(lab_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign")
    assert generate(lab_url, out) == 0
    return out


def test_schema_and_chat_messages(campaign):
    train, held_out = read(campaign / "train.jsonl"), read(campaign / "eval.jsonl")
    assert len(train) >= 30 and held_out
    for row in train + held_out:
        assert set(row) == {"instruction", "input", "output", "meta", "messages"}
        assert row["output"] and row["meta"]["kind"] and "params" in row["meta"]
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant" and row["messages"][-1]["content"] == row["output"]
        assert roles[1:] == ["user", "assistant"] * (len(roles) // 2)
        assert row["instruction"] not in row["output"]  # an answer, not a restatement
    assert len({json.dumps(r["messages"]) for r in train}) == len(train)
    kinds = {r["meta"]["kind"] for r in train}
    assert {"phase_identification", "tri_comparison", "drift_class", "tool_call", "tool_result", "measurement",
            "concept", "refusal", "tool_retry"} <= kinds
    assert {r["meta"]["kind"] for r in held_out} >= set(CHECKABLE) | {"tool_call", "result_phase", "lab_session"}
    for row in held_out:
        if row["meta"]["kind"] in CHECKABLE:
            # The reasoning comes first and the checkable answer closes it, where the evaluation looks for it.
            assert row["meta"]["answer"] in row["meta"]["choices"]
            reasoning, mark, rest = row["output"].partition(samples.ANSWER_MARK)
            assert mark and reasoning and rest.startswith(f" {row['meta']['answer']}.")


def test_a_retry_corrects_the_refused_line_and_trains_only_the_correction(campaign):
    for path in ("train.jsonl", "eval.jsonl"):
        retries = [r for r in read(campaign / path) if r["meta"]["kind"] == "tool_retry"]
        assert retries, path
        for row in retries:
            _, request, refused, error, correction = row["messages"]
            assert refused["train"] is False and "train" not in correction
            with pytest.raises(tools.ToolError) as refusal:
                tools.parse_tool_call(refused["content"])
            assert error["content"] == tools.error_message(str(refusal.value))  # what chat_with_lab.py sends back
            call = tools.parse_tool_call(correction["content"])
            assert (call.name, call.args) == (row["meta"]["call"]["name"], row["meta"]["call"]["args"])
            assert refused["content"] != correction["content"]


def test_measurement_questions_state_the_size_as_at_n_qubits_and_in_the_details_in_both_splits(campaign):
    # run 28 trained "at N qubits" only in refusals and answered "What is the string order of the cluster state at
    # 12 qubits?" with "The lab cannot run 12 qubits"
    at_size = re.compile(r" at \d+ qubits")
    for path in ("train.jsonl", "eval.jsonl"):
        questions = [r["messages"][1]["content"] for r in read(campaign / path) if r["meta"]["kind"] == "measurement"]
        assert any(at_size.search(q) for q in questions), path
        assert not all(at_size.search(q) for q in questions), path


def test_held_out_seeds_are_odd_and_training_seeds_even():
    import random

    rng = random.Random(5)
    assert all(datagen.experiment_seed(rng, "eval") % 2 == 1 for _ in range(200))
    assert all(datagen.experiment_seed(rng, "train") % 2 == 0 for _ in range(200))


@pytest.mark.parametrize(
    "high, answer",
    [("stabilizer_mean", "spt_cluster"), ("correlation_length_norm", "ising_symmetry_breaking"),
     ("x_magnetization", "trivial_product"), (None, "pseudorandom")],
)
def test_identification_reasoning_checks_each_fingerprint(high, answer):
    # 0.62: the lowest fingerprint value of any phase in the default campaign (docs/lab/features.md)
    values = {name: 0.04 for name in samples.SHOWN_FEATURES} | ({high: 0.62} if high else {})
    text = samples.fingerprint_reasoning(values, samples.Quotes())
    assert samples.fingerprint_phase(values) == answer
    assert f"{samples.ANSWER_MARK} {answer}." in text
    for phase, feature in samples.FINGERPRINTS:  # every check up to the answer, each comparison right
        if phase == answer:
            assert (f"{phase} needs {feature} > 0.5: here 0.62 against 0.50: ones 0 and 0, equal; tenths 6 and 5, "
                    "6 > 5, yes.") in text
            break
        assert (f"{phase} needs {feature} > 0.5: here 0.04 against 0.50: ones 0 and 0, equal; tenths 0 and 5, "
                "0 < 5, no.") in text
    assert ("None fits" in text) == (answer == "pseudorandom")


def test_a_negative_fingerprint_is_below_the_level_without_a_digit_walk():
    values = {name: 0.04 for name in samples.SHOWN_FEATURES} | {"x_magnetization": -0.15}
    text = samples.fingerprint_reasoning(values, samples.Quotes())
    assert "trivial_product needs x_magnetization > 0.5: here -0.15 against 0.50: below zero, no." in text


@pytest.mark.parametrize(
    "x, y, walk, sign",
    [("0.030", "0.192", "ones 0 and 0, equal; tenths 0 and 1, 0 < 1", "<"),
     ("1.023", "0.363", "ones 1 and 0, 1 > 0", ">"),
     ("0.436", "0.412", "ones 0 and 0, equal; tenths 4 and 4, equal; hundredths 3 and 1, 3 > 1", ">"),
     ("0.5", "0.512", "ones 0 and 0, equal; tenths 5 and 5, equal; hundredths 0 and 1, 0 < 1", "<"),
     ("0.50", "0.50", "ones 0 and 0, equal; tenths 5 and 5, equal; hundredths 0 and 0, equal", "="),
     ("24", "20", "tens 2 and 2, equal; ones 4 and 0, 4 > 0", ">"),
     ("9", "20", "tens 0 and 2, 0 < 2", "<"),
     ("100", "20", "hundreds 1 and 0, 1 > 0", ">"),
     ("20", "20", "tens 2 and 2, equal; ones 0 and 0, equal", "=")],
)
def test_the_digit_walk_stops_at_the_first_place_that_differs(x, y, walk, sign):
    assert samples.digit_walk(x, y) == (walk, sign)


def test_a_drift_result_is_explained_by_its_trend_and_the_deepest_drift():
    runs = [{"depth": d, "drift": x} for d, x in ((4, 0.0), (8, 0.3318749422), (16, 0.4901419414), (32, 0.5245655806))]
    response = {"phase_type": "pseudorandom", "drift_trend": "saturates", "runs": runs, "params": {"noise": 0.05}}
    quotes = samples.Quotes(cut=True)
    text = samples.drift_result_text(response, quotes)
    assert text.startswith('"drift_trend": "saturates" for pseudorandom: at depth 32, the deepest run, the drift is '
                           '0.524.')
    assert quotes.values == {"drift_32": 0.524}  # no list of depths to lose count in


def test_a_drift_classification_names_the_class_right_after_its_saturation_check(campaign):
    # "so no. Answer:" alone: run 34 reasoned right, then scored the other class in 10 of its 11 misses
    rows = [r for r in read(campaign / "train.jsonl") + read(campaign / "eval.jsonl") if r["meta"]["kind"] == "drift_class"]
    checked = [r for r in rows if "Saturates needs" in r["output"]]
    assert checked
    for row in checked:
        verdict = "yes" if row["meta"]["answer"] == "Saturates" else "no"
        assert f", so {verdict}, so {row['meta']['answer']}. {samples.ANSWER_MARK} {row['meta']['answer']}." in row["output"]
        # run 36 went on from the " S" after "so not Flat." to "SPT_cluster's fingerprint" in 2 of 22 sweeps
        assert "so not Flat. Next, Saturates needs" in row["output"]


def test_a_saturation_check_names_the_drift_it_compares_by_its_depth(campaign):
    # run 46 compared the last drift, the number its product had just used, in 3 of its 7 drift_class misses
    rows = [r for r in read(campaign / "train.jsonl") if r["meta"]["kind"] == "drift_class"]
    checked = [r for r in rows if "Saturates needs" in r["output"]]
    assert checked
    for row in checked:
        table = re.findall(r"depth (\d+): (\d\.\d+)", row["input"])
        (depth, second_last), (last_depth, last) = table[-2], table[-1]
        assert f"Saturates needs the depth-{depth} drift {second_last} above 0.8 × the depth-{last_depth} drift {last}: " in row["output"]
        assert f". The depth-{depth} drift {second_last} against " in row["output"]


def test_each_training_saturates_sweep_is_asked_twice_in_two_wordings(campaign):
    # 11 of the default campaign's 48 training sweeps saturate against 28 that grow, and run 52 ended 10 of its 12
    # drift_class misses "so yes, so Grows"
    rows = [r for r in read(campaign / "train.jsonl") if r["meta"]["kind"] == "drift_class"]
    by_sweep = defaultdict(list)
    for row in rows:
        by_sweep[row["input"]].append(row)
    assert any(r["meta"]["answer"] == "Saturates" for r in rows)
    for sweep in by_sweep.values():
        times = 2 if sweep[0]["meta"]["answer"] == "Saturates" else 1
        assert len(sweep) == times and len({r["instruction"] for r in sweep}) == times
    held_out = [r["input"] for r in read(campaign / "eval.jsonl") if r["meta"]["kind"] == "drift_class"]
    assert len(held_out) == len(set(held_out))


def test_datasets_loads_the_files(campaign):
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("json", data_files=str(campaign / "train.jsonl"), split="train")
    assert loaded.num_rows == len(read(campaign / "train.jsonl"))


def test_answers_are_grounded_in_the_lab_numbers(campaign, lab_url):
    for row in read(campaign / "train.jsonl"):
        for name, value in row["meta"]["values"].items():
            assert any(f"{value:.{digits}f}" in row["output"] + row["input"] for digits in (2, 3))
        if row["meta"]["kind"] == "phase_identification":
            lab = requests.get(f"{lab_url}/experiments/{row['meta']['experiment_id']}", timeout=30).json()
            measured = samples.measurements(lab)
            for name, value in row["meta"]["values"].items():
                assert value == pytest.approx(measured[name], abs=0.005 + 1e-9), name  # quoted to 2 or 3 decimals
        if "answer" in row["meta"] and row["meta"]["kind"] == "phase_identification":
            assert row["meta"]["answer"] == row["meta"]["params"]["phase_type"]


def test_held_out_experiments_share_no_seed_with_training(campaign):
    def seeds(rows):
        found = set()
        for row in rows:
            found |= {int(s) for s in re.findall(r"'seed': (\d+)", str(row["meta"]["params"]))}
        return found

    assert not seeds(read(campaign / "train.jsonl")) & seeds(read(campaign / "eval.jsonl"))


def test_same_seed_same_bytes_whatever_the_workers(campaign, lab_url, tmp_path):
    assert generate(lab_url, tmp_path, "--workers", "1") == 0
    assert (tmp_path / "train.jsonl").read_bytes() == (campaign / "train.jsonl").read_bytes()
    assert (tmp_path / "eval.jsonl").read_bytes() == (campaign / "eval.jsonl").read_bytes()


def test_start_lab_runs_one_lab_per_worker_and_stops_them(campaign, tmp_path, capsys, monkeypatch):
    started = []
    spawn = datagen.LocalLab.spawn
    monkeypatch.setattr(datagen.LocalLab, "spawn", lambda lab: started.append(lab) or spawn(lab))
    assert generate("http://127.0.0.1:9", tmp_path, "--start-lab", "--workers", "2") == 0
    assert len(started) == 2 and all(lab.process.poll() is not None for lab in started)  # both stopped
    assert (tmp_path / "train.jsonl").read_bytes() == (campaign / "train.jsonl").read_bytes()


def test_resume_after_a_kill_repeats_nothing(campaign, lab_url, tmp_path, monkeypatch):
    calls = []
    real_post = LabClient.post

    def dies_after_ten(self, path, body):
        if len(calls) == 10:
            raise KeyboardInterrupt  # what Ctrl-C does mid-campaign
        calls.append(path)
        return real_post(self, path, body)

    monkeypatch.setattr(LabClient, "post", dies_after_ten)
    assert generate(lab_url, tmp_path, "--workers", "1") == 130
    assert not (tmp_path / "train.jsonl").exists()  # nothing half-written
    monkeypatch.setattr(LabClient, "post", lambda self, path, body: calls.append(path) or real_post(self, path, body))
    assert generate(lab_url, tmp_path, "--workers", "1", "--resume") == 0
    total = len(datagen.plan_campaign(datagen.Counts(3, 6, 2, 4, 4), 0, 0.5))
    assert len(calls) == total  # the first ten were not asked again
    assert (tmp_path / "train.jsonl").read_bytes() == (campaign / "train.jsonl").read_bytes()
    assert not list(tmp_path.glob(".*journal"))


def test_resume_refuses_another_campaign(lab_url, tmp_path):
    journal = tmp_path / ".train.jsonl.journal"
    journal.write_text(json.dumps({"campaign": "something-else"}) + "\n")
    assert generate(lab_url, tmp_path, "--resume") == 2


def test_flaky_lab_is_retried(lab_url, tmp_path, campaign):
    """Every third request is refused once (503) and answered when retried: the data is the same. (Refusing every
    third request by count could refuse one request's five tries in a row, by timing alone, where the other worker
    sent exactly two in each pause.)"""
    flaky = FastAPI()
    seen: list[str] = []

    @flaky.get("/health")
    def health():
        return {"status": "healthy"}

    @flaky.post("/{path:path}")
    async def forward(path: str, request: Request):
        body = await request.json()
        key = path + json.dumps(body, sort_keys=True)
        if key not in seen:
            seen.append(key)
            if len(seen) % 3 == 0:
                return JSONResponse({"detail": "lab overloaded"}, status_code=503)
        return requests.post(f"{lab_url}/{path}", json=body, timeout=60).json()

    with serve(flaky) as url:
        assert generate(url, tmp_path) == 0
    assert len(seen) >= 30  # ten refused
    assert (tmp_path / "train.jsonl").read_bytes() == (campaign / "train.jsonl").read_bytes()


def test_lab_down_is_one_clear_line(tmp_path, capsys):
    assert generate("http://127.0.0.1:9", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python jarvis_api.py" in err[0] and "--start-lab" in err[0]


@pytest.mark.parametrize("flag, value", [("--eval-fraction", "1.5"), ("--workers", "0"), ("--tri-tests", "-1")])
def test_bad_flags_exit_2(tmp_path, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        generate("http://127.0.0.1:9", tmp_path, flag, value)
    assert exit_info.value.code == 2


def original_lab() -> FastAPI:
    """A stand-in for the original Jarvis Lab API with exactly its request bounds and response fields (issue #14):
    no feature names, 16 unnamed features, no physics fields; a request outside a bound gets its 422."""
    from pydantic import BaseModel, Field

    class Phase(BaseModel):
        phase_type: str
        system_size: int = Field(32, ge=4, le=256)
        depth: int = Field(8, ge=1, le=32)
        bias: float | None = Field(None, ge=0, le=1)
        seed: int = 0

    class Tri(Phase):
        bias: float = Field(0.7, ge=0, le=1)

    class Discovery(BaseModel):
        phases: list[str] = list(samples.PHASES)
        num_per_phase: int = Field(20, ge=5, le=100)
        k: int | None = Field(None, ge=2, le=10)
        iterations: int = Field(25, ge=10, le=100)
        seed: int = 0

    class Drift(BaseModel):
        phase_type: str
        system_size: int = Field(32, ge=4, le=256)
        base_depth: int = Field(4, ge=1, le=32)
        depth_factors: list[int] = [1, 2, 4, 8]
        seed: int = 0

    lab = FastAPI()

    @lab.get("/health")
    def health():
        return {"status": "healthy", "lab": "operational"}

    @lab.post("/run_phase_experiment")
    def phase(body: Phase):
        return {"experiment_id": f"old-{body.seed}", "phase_type": body.phase_type,
                "feature_vector": [0.1 * i for i in range(16)],
                "summary": {"magnetization": 0.2, "entropy_proxy": 0.5, "correlation_length": 3.0,
                            "string_order": 0.85, "randomness_score": 0.4}, "params": body.model_dump()}

    @lab.post("/tri")
    def tri(body: Tri):
        return {"forward_id": "f", "reverse_id": "r", "TRI": 0.5 + body.bias, "params": body.model_dump()}

    @lab.post("/discovery")
    def discovery(body: Discovery):
        return {"cluster_label_stats": [{p: body.num_per_phase} for p in body.phases],
                "num_samples": body.num_per_phase * len(body.phases), "num_clusters": body.k or len(body.phases),
                "phases": body.phases}

    @lab.post("/replay_drift")
    def drift(body: Drift):
        runs = [{"depth": body.base_depth * f, "id": f"d{f}", "features": [0.0] * 16, "drift": 0.1 * (f - 1)}
                for f in body.depth_factors]
        return {"phase_type": body.phase_type, "base_depth": body.base_depth, "runs": runs}

    return lab


def test_the_default_campaign_against_the_original_lab(tmp_path, capsys):
    with serve(original_lab()) as url:
        assert run_main(datagen.main, ["--api-url", url, "--out", str(tmp_path / "train.jsonl"),
                                       "--eval-out", str(tmp_path / "eval.jsonl")]) == 0
    assert "is the original Jarvis Lab API" in capsys.readouterr().out
    train, held_out = read(tmp_path / "train.jsonl"), read(tmp_path / "eval.jsonl")
    assert len(train) >= 300
    checkable = [r for r in held_out if r["meta"]["kind"] in ("tool_call", "measurement", "concept")]
    assert len(checkable) >= 60 and all(r["meta"].get("call") or r["meta"].get("facts") for r in checkable)
    # and from what that lab returns: its raw /run_phase_experiment results, each naming its phase
    results = [r for r in held_out if r["meta"]["kind"] == "result_phase"]
    assert len(results) >= 20 and all(r["meta"]["answer"] in r["messages"][3]["content"] for r in results)


def test_original_jarvis_lab_api_still_works(tmp_path):
    """The original lab: 16 unnamed features, the old summary keys, no feature_names, no physics fields."""
    with serve(original_lab()) as url:
        assert generate(url, tmp_path) == 0
    train = read(tmp_path / "train.jsonl")
    kinds = {r["meta"]["kind"] for r in train}
    assert "tool_result" in kinds
    assert "phase_identification" not in kinds  # no physical features to identify a phase from
    phase_results = [r for r in train if r["meta"]["kind"] == "tool_result" and '"run_phase"' in r["messages"][2]["content"]]
    assert phase_results and all("string_order 0.850" in r["output"] for r in phase_results)


def test_lab_loop_runs_take_the_phases_in_turn():
    """Each tool's training lab-loop runs cover the four phases evenly (at most one apart): drawn, run 43's data held
    the GHZ state's TRI result twice and the random circuit's 7 times, and the model explained the one with the
    other's sentence."""
    jobs = [job for job in datagen.plan_campaign(datagen.Counts(), 0, 0.1)
            if job.category == "loop" and job.split == "train" and job.body["tool"] != "discovery"]
    for tool in ("run_phase", "tri", "replay_drift"):
        phases = Counter(job.body["args"]["phase_type"] for job in jobs if job.body["tool"] == tool)
        assert set(phases) == set(samples.PHASES), tool
        assert max(phases.values()) - min(phases.values()) <= 1, (tool, phases)


def test_discovery_requests_are_trained_twice_as_often():
    """Discovery requests state two counts whose values overlap ("8 qubits, 10 runs each"): runs 40, 43 and 46 lost
    1-3 of 10 held-out discovery calls to them, so its TOOL lines are trained twice as often; the held-out calls stay
    even (10 per tool)."""
    train = Counter(row["meta"]["call"]["name"] for row in datagen.lab_free_samples(0, datagen.Counts(loop=8), "train")
                    if row["meta"]["kind"] == "tool_call")
    assert train == {"run_phase": 8, "tri": 8, "replay_drift": 8, "discovery": 16}
    held_out = Counter(row["meta"]["call"]["name"] for row in datagen.lab_free_samples(0, datagen.Counts(loop=8), "eval")
                       if row["meta"]["kind"] == "tool_call")
    assert set(held_out.values()) == {datagen.HELD_OUT_TOOL_CALLS // 4}


def test_discovery_requests_name_the_phases_as_people_do():
    """Runs 56-59 sent "Run discovery on the GHZ state and the paramagnet" as all four phases: the requests trained
    name the phases they list in the words people use too, and the TOOL line holds the lab's names of exactly those."""
    from benlab import tool_samples

    rows = [row for row in datagen.lab_free_samples(0, datagen.Counts(loop=48), "train")
            if row["meta"]["kind"] == "tool_call" and row["meta"]["call"]["name"] == "discovery"]
    everyday = {word for phase, words in tool_samples.PHASE_WORDS.items() for word in words if word != phase}
    named = set()
    for row in rows:
        phases, request = row["meta"]["call"]["args"]["phases"], row["messages"][1]["content"]
        if len(phases) < len(samples.PHASES):
            for phase in phases:
                found = [w for w in tool_samples.PHASE_WORDS[phase] if w in request]
                assert found, (phase, request)
                named.update(found)
    assert len(named & everyday) >= 8


def test_a_discovery_explanation_numbers_the_clusters_as_the_lab_does():
    """The lab's clusters come in phase order with k-means' own numbers: an explanation that numbered them 1, 2, ...
    told a user "cluster 2 holds 6 spt_cluster" where the JSON's cluster 2 held pseudorandom."""
    clusters = [{"cluster": 3, "counts": {"ising_symmetry_breaking": 5}}, {"cluster": 0, "counts": {"spt_cluster": 5}}]
    response = {"cluster_label_stats": [c["counts"] for c in clusters], "clusters": clusters, "num_samples": 10,
                "num_clusters": 2, "phases": ["ising_symmetry_breaking", "spt_cluster"], "purity": 1.0,
                "adjusted_rand_index": 1.0}
    text = samples.discovery_text(response, {}, samples.Quotes())
    assert "cluster 3 holds 5 ising_symmetry_breaking (clean); cluster 0 holds 5 spt_cluster (clean)" in text
    original = {k: response[k] for k in ("cluster_label_stats", "num_samples", "num_clusters")}  # no "clusters"
    assert "cluster 0 holds 5 ising_symmetry_breaking (clean); cluster 1 holds 5 spt_cluster" in samples.discovery_text(
        original, {}, samples.Quotes())
    # a clean result is explained by what its scores mean, naming no phase: after a sentence naming all four
    # phases' features, run 62 explained a two-phase result with a third cluster ("cluster 2 holds 6 string_order")
    assert text.endswith("and each phase has a cluster of its own (adjusted_rand_index: how well the clusters match "
                         "the phases).")
    assert not any(phase in text.split("purity = ")[1] for phase in samples.PHASES)


def test_concept_questions_are_also_asked_under_the_tool_protocol():
    """Trained under the plain prompt alone, run 53 answered "What does replay drift measure in the lab?" under
    chat_with_lab.py's prompt by running a sweep: one training concept question in four is put under a protocol
    prompt (each wording in turn), and every held-out one is also asked under chat_with_lab.py's prompt."""
    from benlab import tool_samples
    from benlab.prompts import SYSTEM_PROMPT

    train = tool_samples.concept_samples("train")
    systems = [row["messages"][0]["content"] for row in train]
    assert systems[3::4] == [tool_samples.loop_prompt(i) for i in range(len(train) // 4)]
    assert set(systems[3::4]) == set(tools.TRAIN_PROTOCOL_PROMPTS)
    assert all(s == SYSTEM_PROMPT for i, s in enumerate(systems) if i % 4 != 3)
    held_out = tool_samples.concept_samples("eval")
    plain = [r for r in held_out if r["meta"]["kind"] == "concept"]
    loop = [r for r in held_out if r["meta"]["kind"] == "loop_concept"]
    assert len(loop) == len(plain) >= 32
    assert [r["messages"][1:] for r in loop] == [r["messages"][1:] for r in plain]
    assert {r["messages"][0]["content"] for r in loop} == {tools.LAB_LOOP_SYSTEM_PROMPT}
    assert {r["messages"][0]["content"] for r in plain} == {SYSTEM_PROMPT}
