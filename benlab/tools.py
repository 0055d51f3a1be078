"""The lab-loop protocol, in one place for the data generator, the evaluation and chat_with_lab.py.

A model that needs an experiment replies with one line `TOOL: {"name": ..., "args": {...}}`; the loop POSTs the
args to the tool's lab endpoint and sends the lab's JSON back as a user message `Experiment result: <JSON>` (or the
error, so the model can correct itself), and the model explains it. This is the predecessor's protocol, unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from benlab.prompts import SYSTEM_PROMPT

TOOL_PREFIX = "TOOL:"
RESULT_PREFIX = "Experiment result: "
# Tool name -> the lab endpoint it calls.
TOOL_PATHS = {
    "run_phase": "/run_phase_experiment",
    "tri": "/tri",
    "discovery": "/discovery",
    "replay_drift": "/replay_drift",
}
# The lab's defaults for each tool's arguments (benlab/api.py): an argument left out of a TOOL line takes these.
TOOL_DEFAULTS = {
    "run_phase": {"system_size": 12, "depth": 8, "seed": 0, "bias": 0.5, "noise": 0.05, "shots": 512},
    "tri": {"phase_type": "ising_symmetry_breaking", "system_size": 12, "depth": 8, "seed": 42, "bias": 0.7,
            "noise": 0.05, "shots": 512},
    "discovery": {"phases": ["ising_symmetry_breaking", "spt_cluster", "trivial_product", "pseudorandom"],
                  "num_per_phase": 20, "k": None, "iterations": 25, "system_size": 12, "depth": 8, "seed": 0,
                  "noise": 0.05},
    "replay_drift": {"system_size": 12, "base_depth": 4, "seed": 0, "depth_factors": [1, 2, 4, 8], "bias": 0.5,
                     "noise": 0.05},
}
# What each tool takes: its defaults' fields and the phase it runs (discovery takes `phases`, in its defaults). The
# lab ignores a field it does not know, so a call with one would run without what was asked for ("10 qubits" sent
# as num_per_phase to /tri ran the default 12 qubits): such a call goes back to the model as an error instead.
TOOL_ARGS = {name: set(defaults) | ({"phase_type"} if "phases" not in defaults else set())
             for name, defaults in TOOL_DEFAULTS.items()}
PROTOCOL = (
    'To run an experiment, reply with exactly one line: TOOL: {"name": "run_phase"|"tri"|"discovery"|"replay_drift", '
    '"args": {...}}. The lab\'s answer comes back as "Experiment result: <JSON>"; then explain it, quoting its values.'
)
# The system prompt chat_with_lab.py sends by default.
LAB_LOOP_SYSTEM_PROMPT = f"{SYSTEM_PROMPT} {PROTOCOL}"
# Other wordings of the same protocol: the training data uses several, so the model follows the protocol however a
# client states it. The last two are held out for the evaluation. With four training wordings, run 54 (seed 1)
# answered 4 of the 40 held-out requests (under the held-out two) with the plain prompt's measure-it answer.
PROTOCOL_PROMPTS = (
    LAB_LOOP_SYSTEM_PROMPT,
    "You are ben-lab, the assistant of the Jarvis-2v quantum phase lab. You can run the lab: answer with a single "
    'line TOOL: {"name": <run_phase, tri, discovery or replay_drift>, "args": {<request fields>}} and wait for the '
    "Experiment result message.",
    "Lab assistant with tools. Tools: run_phase (phase experiment), tri (time-reversal instability), discovery "
    '(k-means over phases), replay_drift (depth sweep). Call one as: TOOL: {"name": "...", "args": {...}}',
    "You help researchers use the Jarvis lab. When a measurement is needed, do not guess: output only "
    'TOOL: {"name": ..., "args": ...} and the user will reply with Experiment result: followed by the lab JSON.',
    "Tools available: run_phase, tri, discovery, replay_drift.\nTo use one, write TOOL: followed by a JSON object "
    "with name and args, alone on its line. Tool output is returned as Experiment result: ...",
    "Jarvis lab copilot. If an answer needs data from the lab, do not estimate it: reply with nothing but "
    'TOOL: {"name": ..., "args": {...}} (run_phase, tri, discovery or replay_drift), then explain the result you get.',
    "You are the Jarvis-2v lab's assistant and never make up a measurement. Experiment requests are answered with "
    'one line, TOOL: {"name": "run_phase" | "tri" | "discovery" | "replay_drift", "args": {...}}; I send back '
    '"Experiment result:" and the JSON, which you then explain.',
    'ben-lab, quantum phase lab assistant. Lab access: a line TOOL: {"name": tool, "args": {fields}} on its own runs '
    "an experiment (run_phase, tri, discovery, replay_drift).",
    'System: ben-lab. Experiments are run by writing TOOL: {"name": "<tool>", "args": {...}} on one line '
    "(tools: run_phase, tri, discovery, replay_drift). Results arrive as Experiment result: JSON.",
    "You are a research assistant for a quantum phase lab. If the user wants an experiment run, respond with one "
    'line of the form TOOL: {"name": "run_phase" or "tri" or "discovery" or "replay_drift", "args": {...}}.',
)
TRAIN_PROTOCOL_PROMPTS = PROTOCOL_PROMPTS[:-2]
HELD_OUT_PROTOCOL_PROMPTS = PROTOCOL_PROMPTS[-2:]


class ToolError(ValueError):
    """A TOOL line that cannot be run: not JSON, not the right shape, an unknown tool or an argument it lacks."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict

    @property
    def path(self) -> str:
        return TOOL_PATHS[self.name]

    def line(self) -> str:
        return tool_line(self.name, self.args)


def tool_line(name: str, args: dict) -> str:
    return f"{TOOL_PREFIX} " + json.dumps({"name": name, "args": args})


def parse_tool_call(reply: str) -> ToolCall | None:
    """The reply's tool call, None when its first line does not start with TOOL:, ToolError when it does but cannot
    be run. Text after the JSON object on that line is ignored, as are later lines."""
    first = reply.strip().split("\n", 1)[0].strip()
    if not first.startswith(TOOL_PREFIX):
        return None
    text = first[len(TOOL_PREFIX):].strip()
    try:
        call, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        raise ToolError(f"the TOOL line is not valid JSON: {text[:120]!r}") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ToolError('the TOOL line must be one JSON object {"name": ..., "args": {...}}')
    if call["name"] not in TOOL_PATHS:
        raise ToolError(f"unknown tool {call['name']!r}; the tools are {', '.join(TOOL_PATHS)}")
    args = call.get("args", {})
    if not isinstance(args, dict):
        raise ToolError(f"the args of {call['name']} must be a JSON object, got {json.dumps(args)[:80]}")
    unknown = sorted(set(args) - TOOL_ARGS[call["name"]])
    if unknown:
        raise ToolError(f"{call['name']} has no argument {', '.join(map(repr, unknown))}; it takes "
                        f"{', '.join(sorted(TOOL_ARGS[call['name']]))}")
    return ToolCall(call["name"], args)


def result_message(result: dict) -> str:
    """The user message that carries the lab's JSON back to the model."""
    return RESULT_PREFIX + json.dumps(result)


def error_message(error: str) -> str:
    """A failed call goes back as the result, so the model can correct its request."""
    return RESULT_PREFIX + json.dumps({"error": error})


def same_call(got: ToolCall | None, want: ToolCall) -> bool:
    """The right tool with the right arguments: numbers equal, omitted arguments equal to the lab's defaults."""
    if got is None or got.name != want.name:
        return False
    defaults = TOOL_DEFAULTS[want.name]
    full_got, full_want = {**defaults, **got.args}, {**defaults, **want.args}
    return set(full_got) == set(full_want) and all(same_value(full_got[k], full_want[k]) for k in full_want)


def same_value(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b
