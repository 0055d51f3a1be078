"""The TOOL protocol: parsing a model's reply, and judging a call against the expected one."""

from pathlib import Path

import pytest

from benlab import tools
from benlab.prompts import SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parent.parent


def test_a_tool_line_is_parsed_and_round_trips():
    call = tools.parse_tool_call('TOOL: {"name": "tri", "args": {"phase_type": "spt_cluster", "bias": 0.6}}')
    assert call == tools.ToolCall("tri", {"phase_type": "spt_cluster", "bias": 0.6}) and call.path == "/tri"
    assert tools.parse_tool_call(call.line()) == call
    # text after the JSON object and later lines are ignored; the first line decides
    assert tools.parse_tool_call(call.line() + " thanks\nmore") == call
    assert tools.parse_tool_call("The TRI is 0.4.\n" + call.line()) is None


@pytest.mark.parametrize("line, problem", [
    ("TOOL: {not json", "not valid JSON"),
    ('TOOL: ["tri"]', "one JSON object"),
    ('TOOL: {"name": "teleport", "args": {}}', "unknown tool 'teleport'"),
    ('TOOL: {"name": "tri", "args": [1]}', "must be a JSON object"),
    ('TOOL: {"name": "tri", "args": {"bias": 0.8, "num_per_phase": 10}}', "tri has no argument 'num_per_phase'; it takes"),
    ('TOOL: {"name": "discovery", "args": {"phase_type": "spt_cluster"}}', "discovery has no argument 'phase_type'"),
])
def test_a_bad_tool_line_says_what_is_wrong(line, problem):
    with pytest.raises(tools.ToolError, match=problem):
        tools.parse_tool_call(line)


def test_same_call_allows_omitted_defaults_and_compares_numbers():
    want = tools.ToolCall("run_phase", {"phase_type": "spt_cluster", "system_size": 10})
    assert tools.same_call(tools.ToolCall("run_phase", {"phase_type": "spt_cluster", "system_size": 10.0, "depth": 8}), want)
    assert not tools.same_call(tools.ToolCall("run_phase", {"phase_type": "spt_cluster", "system_size": 12}), want)
    assert not tools.same_call(tools.ToolCall("tri", {"phase_type": "spt_cluster", "system_size": 10}), want)
    assert not tools.same_call(tools.ToolCall("run_phase", {"phase_type": "spt_cluster", "system_size": 10, "x": 1}), want)
    assert not tools.same_call(None, want)


def test_tool_defaults_are_the_labs_defaults():
    from benlab import api

    models = {"run_phase": api.PhaseExperimentRequest, "tri": api.TRIRequest, "discovery": api.DiscoveryRequest,
              "replay_drift": api.ReplayDriftRequest}
    for name, model in models.items():
        lab = {k: f.default for k, f in model.model_fields.items() if not f.is_required()}
        lab = {k: [p.value for p in v] if k == "phases" else getattr(v, "value", v) for k, v in lab.items()}
        assert tools.TOOL_DEFAULTS[name] == lab, name
        assert tools.TOOL_ARGS[name] == set(model.model_fields), name
        assert tools.TOOL_PATHS[name] in {r.path for r in api.app.routes}


def test_requests_state_arguments_in_many_forms_and_orders_and_the_tool_line_follows_the_request():
    import random
    import re

    from benlab import tool_samples

    rng = random.Random(3)
    used = {"train": set(), "eval": set()}
    orders = set()
    for split in ("train", "eval"):
        for i in range(600):
            tool = ("run_phase", "tri", "replay_drift", "discovery")[i % 4]
            args = tool_samples.draw_args(rng, tool, 7)
            request = tool_samples.request_text(rng, tool, args, split)
            stated = [key for key in args if key not in ("phase_type", "phases")]
            where = []
            for key in stated:
                # which of the argument's forms the request uses, and where (values as {:g} writes them)
                forms = tool_samples.DETAIL_FORMS[key] + tool_samples.TRAINED_ONLY_FORMS.get(key, ())
                found = [(request.find(form.format(args[key])), form) for form in forms
                         if re.search(rf"(?<![\w.=]){re.escape(form.format(args[key]))}(?!\w|\.\d)", request)]
                assert found, (request, key)
                position, form = max(found, key=lambda f: len(f[1]))  # "at bias 0.8" over "bias 0.8"
                used[split].add((key, form))
                where.append(position)
            assert where == sorted(where), (request, args)  # the TOOL line lists them as the request states them
            orders.add(tuple(stated))
    held_out = {(key, forms[-1]) for key, forms in tool_samples.DETAIL_FORMS.items() if len(forms) > 2}
    assert not used["train"] & held_out and held_out <= used["eval"]
    assert {(key, form) for key, forms in tool_samples.DETAIL_FORMS.items() for form in forms} - held_out <= used["train"]
    trained_only = {(key, form) for key, forms in tool_samples.TRAINED_ONLY_FORMS.items() for form in forms}
    assert trained_only <= used["train"] and not trained_only & used["eval"]
    assert ("bias", "depth") in {(a, b) for order in orders for a, b in zip(order, order[1:])}  # not one fixed order


def test_a_size_over_the_limit_is_refused_in_every_form_a_request_states_sizes():
    # Run 30 refused "the cluster state with 10 qubits": its refusals all said "with N qubits", its requests rarely.
    import random

    from benlab import tool_samples

    rng, forms = random.Random(5), set()
    for _ in range(400):
        sample = tool_samples.refusal_sample(rng, "train")
        question, answer = sample["messages"][1]["content"], sample["messages"][-1]["content"]
        assert "TOOL:" not in answer
        if not answer.startswith("The lab has no "):
            n = int(answer.split()[0])
            assert n > 20 and f"so {n} > 20, and the lab cannot run {n} qubits" in answer
            found = [form for form in tool_samples.DETAIL_FORMS["system_size"] if form.format(n) in question]
            assert found, question
            forms.add(max(found, key=len))
    assert forms == set(tool_samples.DETAIL_FORMS["system_size"][:-1])  # every training form, never the held-out one


def test_size_questions_compare_the_number_with_the_limits_before_saying_whether_the_lab_can_run_it():
    """Run 56 answered "Can the lab run 24 qubits?" under chat_with_lab.py's prompt by running it; trained on answers
    that began with the verdict, runs 58-59 picked it by the wording. The answers compare N with 20 and then 4, digit
    by digit, then say can or cannot as the limits page does, with no TOOL line; the evaluation asks its own wordings
    under chat_with_lab.py's prompt."""
    import random

    from benlab import grounding, samples, tool_samples

    limits = (ROOT / tool_samples.LIMITS_SOURCE).read_text()
    rng = random.Random(3)
    asked = {split: [tool_samples.size_question_sample(rng, split) for _ in range(120)] for split in ("train", "eval")}
    for split, rows in asked.items():
        for sample in rows:
            n, answer = sample["meta"]["system_size"], sample["messages"][-1]["content"]
            assert tools.parse_tool_call(answer) is None
            walk, sign = samples.digit_walk(str(n), "20")
            assert answer.startswith(f"{n} qubits against the lab's largest system, 20: {walk}, so {n} {sign} 20")
            verdict = f"the lab can run {n} qubits" if 4 <= n <= 20 else f"the lab cannot run {n} qubits"
            assert verdict in answer and answer.index(verdict) > answer.index(f"{sign} 20")
            assert sample["meta"]["within_limits"] == (4 <= n <= 20)
            assert not grounding.ungrounded(sample["messages"], limits)
        assert {(s["meta"]["within_limits"], s["meta"]["system_size"] < 4) for s in rows} == {
            (True, False), (False, False), (False, True)}
    assert {s["messages"][0]["content"] for s in asked["eval"]} == {tools.LAB_LOOP_SYSTEM_PROMPT}
    assert {s["messages"][0]["content"] for s in asked["train"]} <= {*tools.TRAIN_PROTOCOL_PROMPTS, SYSTEM_PROMPT}
    questions = {split: {s["messages"][1]["content"].replace(str(s["meta"]["system_size"]), "{n}") for s in rows}
                 for split, rows in asked.items()}
    assert questions["eval"] == set(tool_samples.SIZE_QUESTIONS[-2:])
    assert questions["train"] == set(tool_samples.SIZE_QUESTIONS[:-2])
