"""How each generated answer of the evaluation is judged: pure functions from (held-out row, answer) to a verdict.
The evaluation (benlab/evaluate.py) generates the answers and builds the report from these verdicts."""

from __future__ import annotations

import json
import re

from benlab import grounding, samples, tools
from benlab.general import PROBES, has_answer
from benlab.samples import ANSWER_MARK, FINGERPRINTS, PHASES
from benlab.prompts import SYSTEM_PROMPT
from benlab.tool_samples import expectation_of

# Generated kinds: held-out kind -> (report key, most new tokens the answer may take).
# Each budget is a little above the longest answer of that kind in the training data (SmolLM2 tokens).
GENERATED = {
    "tool_call": ("tool_call", 96),
    "tool_retry": ("tool_retry", 96),
    "result_phase": ("result_phase", 128),
    "result_tri_compare": ("result_tri_compare", 112),
    "result_drift": ("result_drift", 128),
    "result_discovery": ("result_discovery", 160),  # the longest trained: 139
    "measurement": ("invented_measurements", 208),  # the labelled expectations: 198 at most (run 38)
    "concept": ("concepts", 128),
    "loop_concept": ("loop_concepts", 128),
    "size_question": ("size_questions", 96),
}
PROBE_TOKENS = 48
REFUSAL = re.compile(r"cannot (?:run|simulate)|the lab has no ", re.IGNORECASE)  # how the refusal samples begin
WHOLE_COMPARISON = re.compile(r"(?<![\d.])(\d+) ([<>=]) (\d+)(?![\d.])")  # "24 > 20", "1 < 2"


def picked_phase(answer: str) -> str | None:
    """The phase an explanation names: after "Answer:" or "Phase:", else the only phase it mentions."""
    stated = re.search(rf"(?:{ANSWER_MARK}|Phase:)\s*(\w+)", answer)
    if stated and stated.group(1) in PHASES:
        return stated.group(1)
    named = {p for p in PHASES if p in answer}
    return named.pop() if len(named) == 1 else None


def picked_run(answer: str) -> str | None:
    tail = answer.split(ANSWER_MARK, 1)[1] if ANSWER_MARK in answer else answer
    runs = re.findall(r"Run [AB]", tail)
    return runs[0] if ANSWER_MARK in answer and runs else (runs[-1] if runs else None)


def picked_drift(answer: str) -> str | None:
    """The class an answer states: the drift_trend it quotes ('"drift_trend": "grows"' or "drift_trend is grows"),
    else the class after "Answer:", else the first class it names. "growing" and "saturating" state the class as
    plainly as "grows" and "saturates" do."""
    quoted = re.search(r'drift_trend(?:"\s*:\s*"| is )', answer)
    for text in (answer[quoted.end():quoted.end() + 14] if quoted else "",
                 answer.split(ANSWER_MARK, 1)[1] if ANSWER_MARK in answer else "", answer):
        found = re.search(r"\b(grow|saturat|flat)(?:s|es|ing)?\b", text, re.IGNORECASE)
        if found:
            return {"grow": "Grows", "saturat": "Saturates", "flat": "Flat"}[found.group(1).lower()]
    return None


def context_text(row: dict) -> str:
    return "\n".join(m["content"] for m in row["messages"][:-1])


FINGERPRINT_CLAIM = re.compile(r"(?<!of the )(?<!no )fingerprints? (?:is )?(\w+)")


def wrong_fingerprints(answer: str, phase: str | None) -> list[str]:
    """The features the answer calls the named phase's fingerprint that are not ("its fingerprint x_magnetization is
    0.011" for an ising run; pseudorandom has none): a false statement next to a right phase name. Run 30 wrote one in
    14 of its 20 held-out raw phase results, and result_phase counted them all right."""
    own = dict(FINGERPRINTS).get(phase or "")
    return [m.group(1) for m in FINGERPRINT_CLAIM.finditer(answer) if m.group(1) != own]


FIELD_NAME = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")  # snake_case, as the lab's JSON names its fields


def unknown_fields(answer: str, context: str) -> list[str]:
    """The field-like names an answer uses that no lab result in the conversation has, nor any phase: run 33's
    pseudorandom explanations listed "no strings_order 0.02" and "randomness_entropy 2.82", values under names the
    result does not have, and result_phase counted them right because the phase was."""
    known = set(re.findall(r'"(\w+)"', context)) | set(PHASES)
    return [name for name in FIELD_NAME.findall(answer) if name not in known]


def last_result(context: str) -> dict:
    """The conversation's last lab result (`Experiment result: {...}`); {} where there is none or it is no JSON
    object."""
    results = re.findall(r"Experiment result: (\{.*\})", context)
    try:
        result = json.loads(results[-1]) if results else {}
    except ValueError:
        return {}
    return result if isinstance(result, dict) else {}


def misattached_drifts(answer: str, context: str) -> list[str]:
    """The numbers an answer quotes "at depth D" (either order) that are not the drift of the run at depth D in the
    conversation's last replay-drift result ("0.041 at depth 16" where 0.041 is depth 8's; "the bias is 0.5 at depth
    2"): values of the result, so counting values alone would pass them, but presented as measured at a depth where
    they were not."""
    try:
        drift_at = {int(run["depth"]): float(run["drift"]) for run in last_result(context).get("runs", [])}
    except (ValueError, KeyError, TypeError):
        return []
    quoted = re.findall(r"(\d+\.\d+) at depth (\d+)", answer)  # "0.041 at depth 16"
    # "depth 16 is 0.041", "at depth 32, the deepest run, the drift is 0.415"
    depth_first = r"depth (\d+)(?:, the deepest run, the drift)? is (\d+\.\d+)"
    quoted += [(value, depth) for depth, value in re.findall(depth_first, answer)]
    return [f"{value} at depth {depth}" for value, depth in quoted
            if int(depth) not in drift_at or not grounding.matches(value, drift_at[int(depth)])]


# "cluster 1 holds 6 spt_cluster (clean)": what follows "holds", up to the next clause, is the cluster's description
# (run 62 also wrote "cluster 2 holds 6." and "cluster 2 holds 6 * 0.6 = 1.2 magnets" after a two-cluster result)
CLUSTER_CLAIM = re.compile(r"cluster (\d+) holds ((?:(?!cluster \d)[^;])*?)(?=;|\.\s|\.$|,? cluster \d|$)")


def wrong_clusters(answer: str, context: str) -> list[str]:
    """What an explanation of the conversation's last /discovery result gets wrong about its clusters: a cluster
    described with runs it does not hold, or under a number the result does not give it, and each cluster of the
    result left out. Run 62 explained a two-phase discovery with a third cluster of its own ("cluster 2 holds 6
    string_order (clean)"), every number of which passes for a value of the result."""
    result = last_result(context)
    try:
        want = dict(samples.discovery_clusters(result))
    except (KeyError, TypeError):
        want = {}
    described = [(int(m.group(1)), {phase: int(n) for n, phase in re.findall(r"(\d+) (\w+)", m.group(2))})
                 for m in CLUSTER_CLAIM.finditer(answer)]
    wrong = [f"cluster {i} holds {counts}" for i, counts in described if want.get(i) != counts]
    return wrong + [f"cluster {i} left out" for i in want if i not in {i for i, _ in described}]


def derivations_right(answer: str, context: str) -> tuple[int, int]:
    """(right, written) for the derivations an answer writes ("0.8 × 0.546 = 0.4368", "2 × 0.8 = 1.6"): right when
    the number is the expression's value rounded or cut to the decimals written, and every operand is a small
    integer, a number of the conversation (`context`) or an earlier right step's result."""
    allowed = [float(n) for n in grounding.numbers(context)] + list(grounding.RULE_CONSTANTS)
    return len(grounding.derived(answer, allowed, exact=True)), len(grounding.derivations(answer))


def verdict(row: dict, answer: str) -> dict:
    """{"ok": bool, ...details} for one generated answer."""
    meta, kind = row["meta"], row["meta"]["kind"]
    if kind in ("tool_call", "tool_retry"):
        lines = [line for line in answer.strip().splitlines() if line.strip()]
        try:
            call = tools.parse_tool_call(answer)
        except tools.ToolError:
            call = None
        want = tools.ToolCall(meta["call"]["name"], meta["call"]["args"])
        return {"ok": len(lines) == 1 and tools.same_call(call, want)}
    if kind == "result_discovery":  # every cluster as the result numbers it, with its runs by phase
        good, quoted = grounding.quoted_numbers(answer, context_text(row))
        wrong, unknown = wrong_clusters(answer, context_text(row)), unknown_fields(answer, context_text(row))
        return ({"ok": not wrong and not unknown, "quoted": quoted, "quoted_right": good}
                | ({"wrong_clusters": wrong} if wrong else {}) | ({"unknown_fields": unknown} if unknown else {}))
    if kind in ("result_phase", "result_tri_compare", "result_drift"):
        pick = {"result_phase": picked_phase, "result_tri_compare": picked_run, "result_drift": picked_drift}[kind](answer)
        good, quoted = grounding.quoted_numbers(answer, context_text(row))
        wrong_depth = misattached_drifts(answer, context_text(row)) if kind == "result_drift" else []
        wrong_fingerprint = wrong_fingerprints(answer, pick) if kind == "result_phase" else []
        unknown = unknown_fields(answer, context_text(row))
        return ({"ok": pick == meta["answer"] and not wrong_fingerprint and not unknown, "pick": pick,
                 "quoted": quoted, "quoted_right": max(good - len(wrong_depth), 0)}
                | ({"wrong_depth": wrong_depth} if wrong_depth else {})
                | ({"wrong_fingerprint": wrong_fingerprint} if wrong_fingerprint else {})
                | ({"unknown_fields": unknown} if unknown else {}))
    if kind == "measurement":
        invented = grounding.presented_as_measured(answer, context_text(row))
        # every held-out measurement question is within the lab's limits: saying it cannot be run is false
        # the expectation it may add is the theory's for the quantity and phase asked about, not another's (run 37
        # ended all 20 with the string order's "near 0, since only the cluster state has string order.")
        given = expectation_of(answer)
        return {"ok": not invented, "invented": invented, "refused": bool(REFUSAL.search(answer)),
                "expectation": given is not None and given == expectation_of(row["messages"][-1]["content"])}
    if kind in ("concept", "loop_concept"):
        missing = [f[0] for f in meta["facts"] if not any(s.lower() in answer.lower() for s in f)]
        ran = kind == "loop_concept" and runs_tool(answer)  # a question, not a request
        return {"ok": not missing and not ran, "missing": missing} | ({"tool_line": True} if ran else {})
    if kind == "size_question":
        # can or cannot as the limits say, with the limit that decides it, and answered rather than run
        said_cannot, ran = bool(REFUSAL.search(answer)), runs_tool(answer)
        limit = "4" if meta["system_size"] < 4 else "20"
        named = limit in grounding.numbers(answer)
        false = [m.group(0) for m in WHOLE_COMPARISON.finditer(answer) if not holds(*m.groups())]  # "5 > 20"
        return ({"ok": said_cannot != meta["within_limits"] and named and not ran and not false,
                 "said_cannot": said_cannot, "limit_named": named}
                | ({"tool_line": True} if ran else {}) | ({"false_comparisons": false} if false else {}))
    raise ValueError(f"no verdict for kind {kind}")


def holds(left: str, sign: str, right: str) -> bool:
    a, b = int(left), int(right)
    return a > b if sign == ">" else a < b if sign == "<" else a == b


def probe_chats(system: str = SYSTEM_PROMPT) -> list[list[dict]]:
    return [[{"role": "system", "content": system}, {"role": "user", "content": question},
             {"role": "assistant", "content": ""}] for question, _ in PROBES]


def probe_right(index: int, answer: str) -> bool:
    """Whether the answer contains one of the probe's accepted answers (numbers and short words as whole words)."""
    return has_answer(answer, PROBES[index][1])


def loop_probe_right(index: int, answer: str) -> bool:
    """A probe asked under chat_with_lab.py's prompt: right, and answered rather than sent to the lab as a TOOL line
    (whose numbers could otherwise pass for the answer)."""
    return probe_right(index, answer) and not runs_tool(answer)


def runs_tool(answer: str) -> bool:
    """Whether chat_with_lab.py would take this reply for a tool call (one it runs, or one whose error it sends back),
    by the loop's own parser."""
    try:
        return tools.parse_tool_call(answer) is not None
    except tools.ToolError:
        return True


def session_right(meta: dict, exchange: dict) -> dict:
    """A scripted lab session counts when every tool call ran, the expected tool was called, and the final answer
    is right for the lab's own result: the phase it found, the TRI it measured, the drift trend it reported."""
    turn = exchange["turns"][-1]
    calls, answer = turn["calls"], turn["answer"]
    ran = [c for c in calls if c.get("ok")]
    tool = meta["call"]["name"]
    ok = bool(ran) and len(ran) == len(calls) and ran[-1]["name"] == tool
    if ok:
        result = ran[-1]["result"]
        if tool == "run_phase":
            ok = picked_phase(answer) == result["phase_type"] and not wrong_fingerprints(answer, result["phase_type"])
        elif tool == "tri":
            ok = any("." in n and grounding.matches(n, result["TRI"]) for n in grounding.numbers(answer))
        else:
            ok = picked_drift(answer) == result["drift_trend"].capitalize()
    unknown = unknown_fields(answer, json.dumps([call.get("result") for call in ran]))
    return ({"ok": ok and not unknown, "tool_calls": len(calls), "failed_calls": len(calls) - len(ran)}
            | ({"unknown_fields": unknown} if unknown else {}))

