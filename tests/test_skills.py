"""How the evaluation judges a generated answer: hand-built answers with known verdicts."""

import json

from benlab import skills, tools
from benlab.general import PROBES

RESULT = {"experiment_id": "exp-1", "phase_type": "spt_cluster", "summary": {"stabilizer_mean": 0.9914380088,
          "string_order": 0.940419323, "x_magnetization": 0.0}, "params": {"phase_type": "spt_cluster"}}


def row(kind, meta, *messages):
    return {"meta": {"kind": kind, **meta}, "messages": [{"role": "system", "content": "s"}, *messages]}


def result_row(kind, meta, result):
    """A lab-loop conversation that ends with the lab's result, waiting for the explanation."""
    return row(kind, meta, {"role": "user", "content": "Run it."}, {"role": "assistant", "content": "TOOL: ..."},
               {"role": "user", "content": tools.result_message(result)}, {"role": "assistant", "content": ""})


def test_a_tool_call_counts_only_as_one_right_line():
    r = row("tool_call", {"call": {"name": "tri", "args": {"phase_type": "spt_cluster", "bias": 0.6}}},
            {"role": "user", "content": "TRI of the cluster state at bias 0.6?"}, {"role": "assistant", "content": ""})
    right = tools.tool_line("tri", {"phase_type": "spt_cluster", "bias": 0.6, "seed": 42})  # seed 42 is the default
    assert skills.verdict(r, right)["ok"]
    assert not skills.verdict(r, right + "\nThe TRI will be about 0.4.")["ok"]  # more than one line
    assert not skills.verdict(r, tools.tool_line("tri", {"phase_type": "spt_cluster", "bias": 0.7}))["ok"]
    assert not skills.verdict(r, "TOOL: {broken")["ok"]


def test_a_retry_counts_when_the_corrected_line_is_right():
    call = {"name": "tri", "args": {"phase_type": "spt_cluster", "system_size": 10}}
    wrong = tools.tool_line("tri", {"phase_type": "spt_cluster", "qubits": 10})
    r = row("tool_retry", {"call": call}, {"role": "user", "content": "TRI of the cluster state, 10 qubits?"},
            {"role": "assistant", "content": wrong}, {"role": "user", "content": tools.error_message("no 'qubits'")},
            {"role": "assistant", "content": ""})
    assert skills.verdict(r, tools.tool_line("tri", call["args"]))["ok"]
    assert not skills.verdict(r, wrong)["ok"]  # the same refused line again


def test_result_phase_and_quoted_values():
    r = result_row("result_phase", {"answer": "spt_cluster"}, RESULT)
    good = skills.verdict(r, "stabilizer_mean 0.991 > 0.5, yes. Phase: spt_cluster. string_order 0.940.")
    assert good == {"ok": True, "pick": "spt_cluster", "quoted": 2, "quoted_right": 2}
    bad = skills.verdict(r, "Phase: trivial_product. x_magnetization 0.98.")
    assert not bad["ok"] and bad["quoted"] == 1 and bad["quoted_right"] == 0
    # the right phase named next to another phase's fingerprint (run 30, 14 of 20) is a false statement
    assert skills.verdict(r, "phase_type is spt_cluster; its fingerprint stabilizer_mean is 0.99 > 0.5. "
                             "Answer: spt_cluster.")["ok"]
    wrong = skills.verdict(r, "phase_type is spt_cluster; its fingerprint x_magnetization is 0.00. Answer: spt_cluster.")
    assert not wrong["ok"] and wrong["wrong_fingerprint"] == ["x_magnetization"]
    scrambled = result_row("result_phase", {"answer": "pseudorandom"}, {**RESULT, "phase_type": "pseudorandom"})
    assert skills.verdict(scrambled, "none of the fingerprints is above 0.5 (x_magnetization 0.01). "
                                     "Answer: pseudorandom.")["ok"]
    assert not skills.verdict(scrambled, "its fingerprint x_magnetization is 0.010. Answer: pseudorandom.")["ok"]
    assert skills.verdict(scrambled, "pseudorandom has no fingerprint of its own: x_magnetization 0.01, below 0.5. "
                                     "Answer: pseudorandom.")["ok"]
    # run 33 listed values under names the result does not have; the phase alone made them right
    rambling = skills.verdict(scrambled, "pseudorandom's fingerprint is none: x_magnetization 0.01, no strings_order "
                                         "0.94, randomness_entropy 2.82. Answer: pseudorandom.")
    assert not rambling["ok"] and rambling["unknown_fields"] == ["strings_order", "randomness_entropy"]


def test_a_drift_quoted_at_another_depth_is_not_quoted_right():
    # The chat of run 15: "the drift is 0.041 at depth 16 and 0.181 at depth 32" for drifts measured at 8 and 16.
    drift = {"phase_type": "spt_cluster", "drift_trend": "grows", "runs": [
        {"depth": d, "drift": x} for d, x in ((4, 0.0), (8, 0.0412), (16, 0.1818), (32, 0.4153))]}
    r = result_row("result_drift", {"answer": "Grows"}, drift)
    right = skills.verdict(r, "drift_trend is grows for spt_cluster: the drift is 0.182 at depth 16 and 0.415 at depth 32.")
    assert right == {"ok": True, "pick": "Grows", "quoted": 2, "quoted_right": 2}
    shifted = skills.verdict(r, "drift_trend is grows for spt_cluster: the drift is 0.041 at depth 16 and 0.181 at depth 32.")
    assert shifted["ok"] and shifted["quoted_right"] == 0
    assert shifted["wrong_depth"] == ["0.041 at depth 16", "0.181 at depth 32"]
    # the depth-first form the data now writes is checked the same way
    right = skills.verdict(r, "drift_trend is grows for spt_cluster: the drift at depth 16 is 0.182 and at depth 32 is 0.415.")
    assert right == {"ok": True, "pick": "Grows", "quoted": 2, "quoted_right": 2}
    swapped = skills.verdict(r, "drift_trend is grows for spt_cluster: the drift at depth 16 is 0.415 and at depth 32 is 0.182.")
    assert swapped["quoted_right"] == 0 and swapped["wrong_depth"] == ["0.415 at depth 16", "0.182 at depth 32"]
    deepest = "drift_trend is grows for spt_cluster: at depth 32, the deepest run, the drift is {}."
    assert skills.verdict(r, deepest.format("0.415"))["quoted_right"] == 1
    assert skills.verdict(r, deepest.format("0.182"))["wrong_depth"] == ["0.182 at depth 32"]


DISCOVERY = {"cluster_label_stats": [{"trivial_product": 8}, {"pseudorandom": 6, "trivial_product": 2}],
             "clusters": [{"cluster": 1, "size": 8}, {"cluster": 0, "size": 8}], "num_samples": 16,
             "num_clusters": 2, "purity": 0.875, "adjusted_rand_index": 0.56}


def test_a_discovery_explanation_counts_when_every_cluster_is_the_results():
    """Run 62 explained a two-phase discovery with a third cluster of its own ("cluster 2 holds 6 string_order"):
    each cluster must be described under the number the result gives it, with its runs by phase, none left out."""
    r = result_row("result_discovery", {}, DISCOVERY)
    right = skills.verdict(r, "k-means with k=2 on 16 runs: cluster 1 holds 8 trivial_product (clean); cluster 0 holds "
                              "6 pseudorandom and 2 trivial_product (mixed). purity = 0.875.")
    assert right == {"ok": True, "quoted": 1, "quoted_right": 1}  # the counts are whole numbers: not quoted values
    invented = skills.verdict(r, "cluster 1 holds 8 trivial_product (clean); cluster 0 holds 6 pseudorandom and 2 "
                                 "trivial_product (mixed); cluster 2 holds 6 string_order (clean).")
    assert not invented["ok"] and invented["wrong_clusters"] == ["cluster 2 holds {'string_order': 6}"]
    # run 62's other inventions: a cluster described by a count alone, or by arithmetic of its own
    for made_up in ("cluster 2 holds 8.", "cluster 2 holds 6 * 0.6 = 1.2 magnets."):
        answer = "cluster 1 holds 8 trivial_product (clean); cluster 0 holds 6 pseudorandom and 2 trivial_product; " + made_up
        assert skills.verdict(r, answer)["wrong_clusters"][0].startswith("cluster 2 holds"), made_up
    listed = "cluster 1 holds 8 trivial_product (60.00%), cluster 0 holds 6 pseudorandom and 2 trivial_product."
    assert "wrong_clusters" not in skills.verdict(r, listed)
    # numbered by position instead of by the result's "cluster", and a cluster left out
    renumbered = skills.verdict(r, "cluster 0 holds 8 trivial_product (clean).")
    assert renumbered["wrong_clusters"] == ["cluster 0 holds {'trivial_product': 8}", "cluster 1 left out"]
    assert not skills.verdict(r, "k-means found two clusters with purity 0.875.")["ok"]
    # the original lab gives no cluster numbers: its list's positions are the clusters' numbers
    original = result_row("result_discovery", {}, {k: v for k, v in DISCOVERY.items() if k != "clusters"})
    assert skills.verdict(original, "cluster 0 holds 8 trivial_product; cluster 1 holds 6 pseudorandom and 2 "
                                    "trivial_product.")["ok"]


def test_drift_and_run_picks():
    assert skills.picked_drift("drift_trend is saturates for pseudorandom: ...") == "Saturates"
    assert skills.picked_drift('"drift_trend": "flat" for spt_cluster: at depth 8 ... grows.') == "Flat"
    assert skills.picked_drift('"drift_trend": "spt_cluster": the cluster state ...') is None
    assert skills.picked_drift("Flat needs every drift under 0.02: no. ... Answer: Grows.") == "Grows"
    # the trend quoted from the result counts, even when the model ends with something else after "Answer:"
    assert skills.picked_drift("drift_trend is flat for trivial_product: depth 4: 0.000. Answer: trivial_product.") == "Flat"
    assert skills.picked_drift("drift_trend is growing: depth 4: 0.000, depth 8: 0.022.") == "Grows"
    assert skills.picked_drift("drift_trend is saturating for pseudorandom.") == "Saturates"
    assert skills.picked_drift("drift_trend shows saturation.") is None  # a noun is not a stated class
    assert skills.picked_run("Run A has TRI 0.8, Run B 0.1; so Run A is larger. Answer: Run A.") == "Run A"
    assert skills.picked_phase("spt_cluster needs ... no. trivial_product ... yes. Phase: trivial_product.") == "trivial_product"
    assert skills.picked_phase("It could be spt_cluster or pseudorandom.") is None


def test_a_measurement_answer_with_a_number_as_measured_is_invented():
    r = row("measurement", {}, {"role": "user", "content": "What is the TRI of the cluster state at bias 0.6?"},
            {"role": "assistant", "content": ""})
    assert not skills.verdict(r, "The TRI is 0.999.")["ok"]
    assert skills.verdict(r, 'That has to be measured: TOOL: {"name": "tri", "args": {"bias": 0.6}}. Expectation, '
                             "not a measurement: about 2 × |2 × 0.6 − 1| = 0.40.")["ok"]


def test_a_measurement_question_answered_with_the_size_limit_is_a_false_refusal():
    r = row("measurement", {}, {"role": "user", "content": "What is the string order of the cluster state at 12 qubits?"},
            {"role": "assistant", "content": ""})
    refused = skills.verdict(r, "The lab cannot run 12 qubits: system_size must be 4–20.")  # run 28's answer
    assert refused["refused"] and refused["ok"]  # false, but no number presented as measured
    assert not skills.verdict(r, "That has to be measured. The trivial phase has no string order.")["refused"]


def test_concept_needs_every_key_fact():
    r = row("concept", {"facts": [["string order"], ["stabilizer"], ["topolog", "spt"]]},
            {"role": "user", "content": "What is the cluster phase?"}, {"role": "assistant", "content": ""})
    assert skills.verdict(r, "An SPT phase: string order and stabilizers near 1.")["ok"]
    assert skills.verdict(r, "An SPT phase with string order.") == {"ok": False, "missing": ["stabilizer"]}


def test_a_concept_question_in_the_lab_loop_counts_only_when_answered_not_run():
    facts = {"facts": [["echo"], ["overlap"]]}
    r = row("loop_concept", facts, {"role": "user", "content": "What is the Loschmidt echo?"},
            {"role": "assistant", "content": ""})
    assert skills.verdict(r, "The Loschmidt echo is the overlap after a forward and reverse run.")["ok"]
    ran = skills.verdict(r, 'TOOL: {"name": "tri", "args": {}}\nthe echo is an overlap')
    assert ran == {"ok": False, "missing": [], "tool_line": True}
    # under the plain prompt the same words pass: only the lab loop would run that line
    assert skills.verdict({**r, "meta": {"kind": "concept", **facts}}, 'TOOL: {"name": "tri"} echo overlap')["ok"]


def test_a_size_question_counts_when_answered_as_the_limits_say_and_not_run():
    def judged(n, answer):
        r = row("size_question", {"system_size": n, "within_limits": 4 <= n <= 20},
                {"role": "user", "content": f"Can the lab run {n} qubits?"}, {"role": "assistant", "content": ""})
        return skills.verdict(r, answer)["ok"]

    assert judged(24, "The lab cannot run 24 qubits: 24 is above its limit of 20.")
    assert judged(12, "The lab can run 12 qubits: system_size goes from 4 to 20.")
    assert judged(3, "The lab cannot run 3 qubits: its smallest system is 4 qubits.")
    assert judged(24, "24 qubits against the lab's largest system, 20: tens 2 and 2, equal; ones 4 and 0, 4 > 0, so "
                      "24 > 20, and the lab cannot run 24 qubits.")
    assert judged(12, "12 qubits against the lab's largest system, 20: tens 1 and 2, 1 < 2, so 12 < 20; against its "
                      "smallest, 4: tens 1 and 0, 1 > 0, so 12 > 4, and the lab can run 12 qubits.")
    assert not judged(12, "12 qubits against the lab's largest system, 20: tens 1 and 2, 1 > 2, so 12 > 20, and the "
                          "lab cannot run 12 qubits.")  # a wrong comparison's verdict is wrong
    assert not judged(24, "24 qubits against the lab's largest system, 20: tens 2 and 2, equal; ones 4 and 0, 4 < 0, so "
                          "24 > 20, and the lab cannot run 24 qubits.")  # the right verdict from a false step
    assert not judged(12, "The lab cannot run 12 qubits: 12 is above its limit of 20.")  # the wrong way round
    assert not judged(24, "The lab can run 24 qubits: system_size goes up to 20.")
    assert not judged(24, "The lab cannot run 24 qubits.")  # no limit: no reason a user can act on
    assert not judged(12, 'TOOL: {"name": "run_phase", "args": {"phase_type": "spt_cluster", "system_size": 12}}\n'
                          "The lab can run 12 qubits, up to 20.")  # asked, not requested


def test_a_probe_in_the_lab_loop_counts_only_when_answered_not_run():
    index = next(i for i, (q, _) in enumerate(PROBES) if q == "What is 12 + 12?")
    assert skills.loop_probe_right(index, "12 + 12 = 24.")
    assert not skills.loop_probe_right(index, 'TOOL: {"name": "run_phase", "args": {"system_size": 24}}')
    assert not skills.loop_probe_right(index, "12 + 12 = 20.")


def test_probe_answers_are_matched_as_whole_words():
    index = next(i for i, (q, _) in enumerate(PROBES) if q == "What is 12 + 12?")
    assert skills.probe_right(index, "12 + 12 = 24.")
    assert not skills.probe_right(index, "The answer is 124.") and not skills.probe_right(index, "It is 2.4.")
    light = next(i for i, (q, _) in enumerate(PROBES) if q.startswith("What is the speed of light"))
    assert skills.probe_right(light, "The speed of light in a vacuum is approximately 299,792.458 km/s.")  # exact
    paris = next(i for i, (q, _) in enumerate(PROBES) if "France" in q)
    assert skills.probe_right(paris, "The capital of France is Paris.")
    assert not skills.probe_right(paris, "The capital of France is France.")
    assert len(PROBES) >= 60 and len({q for q, _ in PROBES}) == len(PROBES)
    boil = next(i for i, (q, _) in enumerate(PROBES) if "boil at sea level" in q)
    assert skills.probe_right(boil, "Water boils at approximately 100.0 Celsius.")  # run 29's base answer, right
    assert not skills.probe_right(boil, "about 100.05 degrees")
    seconds = next(i for i, (q, _) in enumerate(PROBES) if q == "What is the SI unit of time?")
    assert skills.probe_right(seconds, "The SI unit of time is seconds.")


def test_a_session_counts_when_the_call_ran_and_the_answer_matches_the_lab():
    meta = {"call": {"name": "tri", "args": {}}}
    ran = {"turns": [{"calls": [{"name": "tri", "ok": True, "result": {"TRI": 0.4141104267}}],
                      "answer": "TRI = 0.414 for spt_cluster."}]}
    assert skills.session_right(meta, ran)["ok"]
    wrong = json.loads(json.dumps(ran))
    wrong["turns"][0]["answer"] = "TRI = 0.9."
    assert not skills.session_right(meta, wrong)["ok"]
    failed = {"turns": [{"calls": [{"name": "tri", "ok": False, "error": "422"}], "answer": "TRI = 0.414."}]}
    assert not skills.session_right(meta, failed)["ok"]
    phase = {"turns": [{"calls": [{"name": "run_phase", "ok": True, "result": RESULT}],
                        "answer": "phase_type is spt_cluster; its fingerprint stabilizer_mean is 0.99. Answer: spt_cluster."}]}
    assert skills.session_right({"call": {"name": "run_phase", "args": {}}}, phase)["ok"]
    phase["turns"][0]["answer"] = phase["turns"][0]["answer"].replace("stabilizer_mean", "x_magnetization")
    assert not skills.session_right({"call": {"name": "run_phase", "args": {}}}, phase)["ok"]
    # a value under a name the result does not have is false, whatever the phase named
    phase["turns"][0]["answer"] = "phase_type is spt_cluster; string_orders 0.94. Answer: spt_cluster."
    verdict = skills.session_right({"call": {"name": "run_phase", "args": {}}}, phase)
    assert not verdict["ok"] and verdict["unknown_fields"] == ["string_orders"]



def test_a_measure_it_answer_gives_the_expectation_of_the_quantity_and_phase_asked_about():
    # run 37 ended all 20 held-out measure-it answers with the string order's "near 0, since only the cluster
    # state has string order.", whatever was asked
    import random

    from benlab import tool_samples

    rng = random.Random(3)
    drawn = [tool_samples.measurement_question_sample(rng, "eval", 7) for _ in range(60)]
    labels = set()
    for sample in drawn:
        answer = sample["messages"][-1]["content"]
        phase = sample["meta"]["call"]["args"]["phase_type"]
        label = answer.split(tool_samples.EXPECTATION_MARK + ", for the ", 1)[1].split(":", 1)[0]
        assert label.endswith(f" of {phase}") and (label.startswith("TRI ") == (sample["meta"]["call"]["name"] == "tri"))
        labels.add(label)
        judged = skills.verdict(sample, answer)
        assert judged["ok"] and judged["expectation"]
        other = answer.split(tool_samples.EXPECTATION_MARK)[0] + ("Expectation, not a measurement, for the string order "
                                                                   "of spt_cluster: near 0, since only the cluster state "
                                                                   "has string order.")
        assert not skills.verdict(sample, other)["expectation"]
        assert not skills.verdict(sample, answer.split(tool_samples.EXPECTATION_MARK)[0])["expectation"]
    assert len(labels) >= 10


def test_the_general_replay_never_trains_on_a_probe():
    """general_retention counts what the model kept of the probes; a replay prompt that is a probe (whatever its case,
    spacing or final punctuation) would teach the answer the metric then checks."""
    from benlab.general import REPLAY_ANSWERS, REPLAY_PROMPTS

    def norm(text):
        return " ".join(text.lower().rstrip("?.!").split())

    assert not {norm(p) for p in REPLAY_PROMPTS} & {norm(q) for q, _ in PROBES}
    assert len(set(map(norm, REPLAY_PROMPTS))) == len(REPLAY_PROMPTS)  # each prompt once
    assert set(REPLAY_ANSWERS) <= set(REPLAY_PROMPTS)
