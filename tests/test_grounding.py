"""The grounding rule: every number an assistant turn presents as measured comes from the conversation, a checked
derivation, a rule constant, or the documentation page the answer cites; and what the default data teaches."""

import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from benlab import concepts, datagen, docgen, grounding, samples, skills, tool_samples, tools, worked_arithmetic
from benlab.common import run_main

ROOT = Path(__file__).resolve().parent.parent


def chat(question, answer):
    return [{"role": "system", "content": "s"}, {"role": "user", "content": question},
            {"role": "assistant", "content": answer}]


def test_a_number_from_the_question_is_grounded_at_its_quoted_precision():
    assert grounding.ungrounded(chat("Run A has TRI 0.4141104267.", "Run A: TRI 0.414, about 0.41.")) == []
    assert grounding.ungrounded(chat("Run A has TRI 0.4141104267.", "TRI 0.42.")) == []  # one unit of the last digit
    assert grounding.ungrounded(chat("Run A has TRI 0.4141104267.", "TRI 0.44.")) == [(2, "0.44")]


def test_an_invented_measurement_is_caught():
    question = "Explain the outcome of this run: ising_symmetry_breaking, 10 qubits, depth 8, bias 0.5, seed 86939546."
    answer = "Ordered: |m| = 0.928, ZZ 0.856, correlation length 0.867."
    assert [n for _, n in grounding.ungrounded(chat(question, answer))] == ["0.928", "0.856", "0.867"]


def test_a_derivation_must_evaluate_to_what_it_claims():
    good = chat("bias 0.7, N=12", "Expected TRI 2 × |2 × 0.7 − 1| = 0.80; Page value 12/2 × ln 2 − 1/2 = 3.66; 0.80 again.")
    assert grounding.ungrounded(good) == []
    assert grounding.ungrounded(chat("bias 0.7", "Expected TRI 2 × |2 × 0.7 − 1| = 0.90.")) == [(2, "0.90")]
    # a derivation from a number that is not in the conversation derives nothing
    assert grounding.ungrounded(chat("bias 0.7", "0.8 × 0.613 = 0.490.")) == [(2, "0.613"), (2, "0.490")]


def test_the_cited_page_grounds_a_concept_answer():
    page = (ROOT / "docs/lab/tri.md").read_text()
    answer = chat("What is TRI?", "Pseudorandom circuits give TRI ≈ 0.08 ± 0.02.")
    assert grounding.ungrounded(answer) and grounding.ungrounded(answer, page) == []


def test_presented_as_measured_skips_tool_lines_expectations_and_the_question():
    question = "What is the TRI of the SPT cluster phase at bias 0.6, 10 qubits?"
    assert grounding.presented_as_measured("TRI = 0.999.", question) == ["0.999"]
    honest = ('That has to be measured: TOOL: {"name": "tri", "args": {"bias": 0.6}}. Expectation, not a '
              "measurement: about 0.40.")
    assert grounding.presented_as_measured(honest, question) == []


def test_quoted_numbers_counts_values_of_the_result():
    result = '{"TRI": 0.4141104267, "loschmidt_echo": 0.9847726148}'
    assert grounding.quoted_numbers("TRI = 0.414, loschmidt_echo = 0.985 > 0.5.", result) == (2, 2)
    assert grounding.quoted_numbers("TRI = 0.514.", result) == (0, 1)


@pytest.fixture(scope="module")
def default_data(lab_url, tmp_path_factory):
    """The default campaign (every default count) and the default documentation samples."""
    out = tmp_path_factory.mktemp("default-data")
    assert run_main(datagen.main, ["--api-url", lab_url, "--out", str(out / "train.jsonl"),
                                   "--eval-out", str(out / "eval.jsonl")]) == 0
    assert run_main(docgen.main, ["--docs", str(ROOT / "docs"), "--out", str(out / "docs.jsonl")]) == 0
    return [out / "train.jsonl", out / "docs.jsonl", out / "eval.jsonl"]


def test_every_default_sample_is_grounded(default_data):
    checked, bad = 0, []
    for path in default_data:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            source = row["meta"].get("source")
            page = (ROOT / source).read_text() if source else ""
            found = grounding.ungrounded(row["messages"], page)
            checked += 1
            if found:
                bad.append((row["meta"]["kind"], found, row["messages"][-1]["content"][:200]))
    assert checked > 500 and not bad, bad[:3]


def test_the_default_data_teaches_the_lab_loop(default_data):
    rows = [json.loads(line) for line in default_data[0].read_text().splitlines()]
    kinds = {row["meta"]["kind"] for row in rows}
    assert {"tool_call", "tool_result", "follow_up", "refusal", "measurement", "concept"} <= kinds
    assert len(rows) + len(default_data[1].read_text().splitlines()) >= 300
    # every tool_result conversation carries the lab's JSON and two assistant turns, the first a TOOL line
    for row in rows:
        if row["meta"]["kind"] == "tool_result":
            roles = [m["role"] for m in row["messages"]]
            assert roles == ["system", "user", "assistant", "user", "assistant"]
            assert row["messages"][2]["content"].startswith("TOOL: ")
            assert row["messages"][3]["content"].startswith("Experiment result: {")


def test_every_name_people_use_maps_to_its_phase_type(default_data):
    rows = [json.loads(line) for line in default_data[0].read_text().splitlines()]
    names = [row for row in rows if row["meta"]["kind"] == "phase_name"]
    for phase, words in tool_samples.PHASE_WORDS.items():
        for word in words:
            asked = [r for r in names if word in r["messages"][1]["content"] and r["meta"]["params"]["phase_type"] == phase]
            assert asked, word
            for row in asked:
                answer = row["messages"][-1]["content"]
                assert f"phase_type {phase}" in answer and not any(p in answer for p in samples.PHASES if p != phase)


def test_concepts_are_asked_by_each_of_their_names_but_never_in_a_held_out_phrasing():
    for concept in concepts.CONCEPTS:
        asked = concepts.training_questions(concept)
        held_out = {concepts.normalized(q) for q in concept.held_out}
        assert not held_out & {concepts.normalized(q) for q in asked}, concept.name
        for subject in concepts.SUBJECTS[concept.name]:
            assert any(subject.lower() in q.lower() for q in asked), (concept.name, subject)


WALK = r"((?:\w+ \d and \d, equal; )*\w+ (\d) and (\d), \d ([<>]) \d)"
STEPS = r"8 × \d = \d+(?:, \d+ \+ \d = \d+)?: \d+(?:; 8 × \d = \d+(?:, \d+ \+ \d = \d+)?: \d+)*"  # times_digit


def test_a_tri_comparison_walks_the_digits_and_names_the_larger_run_after_them(default_data):
    rows = [json.loads(line) for line in default_data[0].read_text().splitlines()]
    compared = [r for r in rows if r["meta"]["kind"] in ("tri_comparison", "result_tri_compare")]
    assert len(compared) >= 50
    for row in compared:
        answer, winner = row["messages"][-1]["content"], row["meta"]["answer"]
        walk = re.search(rf"Run A's ([\d.]+) against Run B's ([\d.]+): {WALK}, so (Run [AB]) is larger", answer)
        assert walk and walk.group(7) == winner == ("Run A" if walk.group(6) == ">" else "Run B"), answer
        assert samples.digit_walk(walk.group(1), walk.group(2)) == (walk.group(3), walk.group(6)), answer
        assert (float(walk.group(1)) > float(walk.group(2))) == (walk.group(6) == ">"), answer


def test_the_drills_walk_the_comparison_and_work_the_product_right(default_data):
    rows = [json.loads(line) for line in default_data[0].read_text().splitlines()]
    drills = [r for r in rows if r["meta"]["kind"] == "number_drill"]
    assert len(drills) >= 200
    compares, products, same_whole, near_level, tri_expectations = Counter(), Counter(), 0, 0, 0
    flat_checks = Counter()
    for row in drills:
        question, answer = row["messages"][1]["content"], row["messages"][-1]["content"]
        if answer.startswith("Flat needs"):  # the check on the question's drifts, stopped at the first not under 0.02
            sweep = re.findall(r"depth (\d+): (\d\.\d{3})", question)
            checks = re.findall(r"depth (\d+) (\d\.\d{3}) starts (\d\.\d\d) (yes|no)", answer)
            assert [(d, t) for d, t, _, _ in checks] == sweep[: len(checks)], answer
            assert all(lead == t[:4] and (float(t) < 0.02) == (v == "yes") for _, t, lead, v in checks), answer
            flat = all(v == "yes" for *_, v in checks) and len(checks) == len(sweep)
            assert answer.endswith(", so Flat." if flat else ", so not Flat.") and (flat or checks[-1][3] == "no"), answer
            assert row["meta"]["answer"] == ("Flat" if flat else "not Flat")
            flat_checks["zeros" if flat and all(float(t) == 0 for _, t in sweep) else row["meta"]["answer"]] += 1
            continue
        tri = re.fullmatch(r"2 × \|2b − 1\| at b = ([\d.]+): 2 × \1 = ([\d.]+), (?:\2 − 1|1 − \2) = ([\d.]+), "
                           r"2 × \3 = ([\d.]+)\. Answer: \4\.", answer)
        if tri:  # every step right, the bias the question's
            bias, doubled, distance, value = (Decimal(g) for g in tri.groups())
            assert f"b = {tri.group(1)}" in question or f"bias {tri.group(1)}" in question, answer
            assert doubled == 2 * bias and distance == abs(doubled - 1) and value == 2 * distance, answer
            assert row["meta"]["answer"] == tri.group(4)
            tri_expectations += 1
            continue
        compare = re.fullmatch(rf"Run A's ([\d.]+) against Run B's ([\d.]+): {WALK}, so (Run [AB]) is larger\. "
                               r"Answer: (Run [AB])\.", answer)
        if compare:
            a, b = re.findall(r"\d\.\d{3}", question)
            assert (compare.group(1), compare.group(2)) == (a, b), answer
            assert samples.digit_walk(a, b) == (compare.group(3), compare.group(6)), answer
            assert (float(a) > float(b)) == (compare.group(6) == ">"), answer
            winner = "Run A" if compare.group(6) == ">" else "Run B"
            assert compare.group(7) == compare.group(8) == row["meta"]["answer"] == winner, answer
            compares[compare.group(7)] += 1
            same_whole += a[0] == b[0]
            continue
        # the compared drift named by its depth where the question names one, as the drift classifications name it
        product = re.fullmatch(rf"({STEPS}), so 0\.8 × ([\d.]+) = ([\d.]+)\. (?:The depth-\d+ drift )?([\d.]+) against \3: "
                               rf"(?:{WALK}|((?:\w+ \d and \d, equal; )*\w+ \d and \d, equal)), so (yes|no)\.", answer)
        assert product, answer
        steps, last, level, previous = product.group(1), product.group(2), product.group(3), product.group(4)
        named = re.match(r"Is the depth-(\d+) drift ", question)
        assert (f". The depth-{named.group(1)} drift {previous} against " in answer) if named else \
            (f". {previous} against " in answer), answer
        # every step right, and the level the exact product (one decimal more than the drift)
        assert last in question and level == f"{Decimal('0.8') * Decimal(last):.4f}", answer
        assert all(eval(step.split(" = ")[0].replace("×", "*")) == int(step.split(" = ")[1].split(":")[0])
                   for step in re.split(r"[,;] ", steps)), answer
        assert worked_arithmetic.times_digit(8, last) == (steps, level), answer
        walked = (product.group(5), product.group(8)) if product.group(5) else (product.group(9), "=")
        assert samples.digit_walk(previous, level) == walked, answer
        # equal to the thousandths is not above the level
        assert (float(previous) > float(level)) == (walked[1] == ">") == (product.group(10) == "yes"), answer
        products[product.group(10)] += 1
        near_level += 0.92 <= float(previous) / float(level) <= 1.08 if float(level) else 0
    # both verdicts often, and mostly the same whole part, where the model went wrong (benlab/number_drills.py)
    assert min(compares.values()) >= 0.3 * len(drills) / 2 and min(products.values()) >= 0.3 * len(drills) / 2
    # a quarter of the products or more close to the level, where only a product right to the thousandth decides
    assert near_level >= 0.25 * sum(products.values())
    assert same_whole >= 0.5 * sum(compares.values())
    assert tri_expectations >= 0.12 * len(drills)
    # run 35 read "depth 16 0.140 yes" and looped on a sweep of zeros: both verdicts and all-zero sweeps, often
    assert min(flat_checks[v] for v in ("Flat", "not Flat", "zeros")) >= 6, flat_checks


def test_a_raw_phase_result_is_explained_by_the_phase_it_names(default_data):
    rows = [json.loads(line) for path in default_data for line in path.read_text().splitlines()]
    explained = [r for r in rows if r["meta"]["kind"] in ("tool_result", "result_phase")
                 and r["meta"]["call"]["name"] == "run_phase"]
    assert len(explained) >= 20
    # every phase in turn: drawn at random, one campaign had 4 ising explanations and 18 pseudorandom
    per_phase = Counter(row["meta"]["answer"] for row in explained)
    assert min(per_phase[phase] for phase in samples.PHASES) >= 0.2 * len(explained), per_phase
    # run 32 trained on 5 a phase and wrote pseudorandom's explanation in the other phases' shape: the
    # identification runs are explained as raw results too
    trained = Counter(row["meta"]["answer"] for row in explained if row["meta"]["kind"] == "tool_result")
    assert min(trained[phase] for phase in samples.PHASES) >= 12, trained
    for row in explained:
        result = json.loads(row["messages"][3]["content"].removeprefix(tools.RESULT_PREFIX))
        # the TOOL line, with the lab's defaults for what it leaves out, is the run whose result follows
        call = tools.parse_tool_call(row["messages"][2]["content"])
        asked = {**tools.TOOL_DEFAULTS["run_phase"], **call.args}
        assert {key: result["params"][key] for key in asked} == asked, (row["messages"][1]["content"], result["params"])
        phase, answer = result["phase_type"], row["messages"][-1]["content"]
        assert answer.startswith(f"phase_type is {phase}; ") and f"{samples.ANSWER_MARK} {phase}." in answer, answer
        assert not any(f"{samples.ANSWER_MARK} {other}" in answer for other in samples.PHASES if other != phase)
        for feature, value in re.findall(r"(\w+) is ([\d.]+) > 0\.5", answer):  # the named phase's fingerprint
            assert float(value) > 0.5 and dict(samples.FINGERPRINTS)[phase] == feature, answer
        if phase == "pseudorandom":
            assert all(float(v) < 0.5 for v in re.findall(r"(?:stabilizer_mean|correlation_length_norm|x_magnetization) "
                                                           r"([\d.]+)[,)]", answer)), answer


def test_raw_drift_results_are_explained_in_training_as_often_as_they_are_asked(default_data):
    # run 35 trained on the loop's 12 raw sweeps and ended 11 of its 24 held-out raw-drift explanations with the
    # drift_class digit walk: half the classification sweeps are explained as raw results too
    rows = [json.loads(line) for line in default_data[0].read_text().splitlines()]
    explained = [r for r in rows if r["meta"]["kind"] == "tool_result" and r["meta"]["call"]["name"] == "replay_drift"]
    assert len(explained) >= 30, len(explained)
    for row in explained:
        result = json.loads(row["messages"][3]["content"].removeprefix(tools.RESULT_PREFIX))
        call = tools.parse_tool_call(row["messages"][2]["content"])
        asked = {**tools.TOOL_DEFAULTS["replay_drift"], **call.args}
        ran = {**result["params"], "base_depth": result["base_depth"]}
        assert {key: ran[key] for key in asked} == asked, (row["messages"][1]["content"], result["params"])
        deepest = result["runs"][-1]
        assert row["messages"][-1]["content"].startswith(
            f'"drift_trend": "{result["drift_trend"]}" for {result["phase_type"]}: at depth {deepest["depth"]}, '
            "the deepest run, the drift is "), row["messages"][-1]["content"]


def test_a_concept_answer_presents_no_number_as_measured():
    # Asked for a measurement, the model sometimes answers with a concept's answer (run 21: the TRI concept's
    # "TRI is small (about 0.08)" twice): its typical values must read as expectations, its settings as defaults.
    for concept in concepts.CONCEPTS:
        for number in grounding.presented_as_measured(concept.answer, ""):
            sentence = next(s for s in re.split(r"(?<=[.;!?])\s+", concept.answer) if number in s)
            assert "default" in sentence, (concept.name, number, sentence)


def test_every_raw_phase_result_is_explained_with_its_own_phases_fingerprint(default_data):
    # the evaluation counts an explanation that names another phase's fingerprint wrong (skills.wrong_fingerprints)
    named = 0
    for path in default_data:
        for line in path.read_text().splitlines():
            for turn in json.loads(line)["messages"]:
                stated = re.search(r"phase_type is (\w+)", turn["content"])
                if turn["role"] == "assistant" and stated:
                    assert skills.wrong_fingerprints(turn["content"], stated.group(1)) == [], turn["content"]
                    named += "fingerprint" in turn["content"]
    assert named >= 20


def test_every_phase_answer_and_page_gives_the_fingerprint_the_identification_uses(default_data):
    # Run 31 explained cluster-state results with "spt_cluster's fingerprint is correlation_length_norm": the
    # concept answers gave the ising fingerprint 117 times, the cluster's 49, and docs called the string order the
    # cluster's fingerprint, discovery answers said every phase has its own.
    fingerprints = dict(samples.FINGERPRINTS)
    by_concept = {"ising phase": "ising_symmetry_breaking", "cluster phase": "spt_cluster",
                  "trivial phase": "trivial_product", "pseudorandom phase": "pseudorandom"}
    for concept in concepts.CONCEPTS:
        phase = by_concept.get(concept.name)
        if phase in fingerprints:
            assert f"fingerprint is {fingerprints[phase]}" in concept.answer, concept.name
        elif phase:
            assert "no fingerprint of its own" in concept.answer
    texts = [page.read_text() for page in (ROOT / "docs" / "lab").glob("*.md")]
    texts += [line for path in default_data for line in path.read_text().splitlines()]
    for text in texts:
        for feature in re.findall(r"(\w+)`? is the fingerprint of the SPT phase", text):
            assert feature == fingerprints["spt_cluster"], text
        assert "its own fingerprint" not in text, text


def test_the_evaluation_reads_the_longest_trained_reasoning_whole(default_data):
    """The evaluation generates each multiple-choice reasoning up to "Answer:" within evaluate.REASONING_TOKENS of the
    default base model's tokenizer: run 48's drift checks, longer than the budget, were all cut before their verdict."""
    from benlab import evaluate, models

    tokenizer = models.load_tokenizer(models.resolve("smollm2"))
    longest = max(len(tokenizer(row["output"].split(samples.ANSWER_MARK)[0])["input_ids"])
                  for path in (default_data[0], default_data[2]) for row in map(json.loads, path.read_text().splitlines())
                  if row["meta"]["kind"] in evaluate.QUESTION_TYPES)
    assert longest <= evaluate.REASONING_TOKENS - 20, longest


@pytest.mark.parametrize("text, false", [
    ("A dozen is 2 × 6 = 14 eggs.", True),
    ("7 + 8 = 15, since 7 + 7 = 15.", True),
    ("Two hours is equal to 2 * 60 = 120 minutes.", False),
    ("11 * 11 = 121", False),
    ("The capital of Peru is Lima.", False),
])
def test_false_arithmetic_is_a_derivation_that_does_not_hold(text, false):
    assert grounding.false_arithmetic(text) is false
