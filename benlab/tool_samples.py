"""Samples for ben-lab in the lab loop (benlab/tools.py): requests in everyday words that become one TOOL line,
whole conversations request -> TOOL line -> the lab's JSON -> an explanation that quotes it, requests the lab cannot
run, follow-up questions answered from a result already in the conversation, and measurement questions asked
without a result, which are answered with how to measure them, never with a number presented as measured.

Pure functions: the generator draws requests here, runs their args against the lab, and hands the responses back.
"""

from __future__ import annotations

import random

from benlab import samples, tools
from benlab.concepts import CONCEPTS, PHASE_SUMMARIES, training_questions
from benlab.prompts import SYSTEM_PROMPT
from benlab.samples import PHASES, Quotes, measurements
from benlab.worked_arithmetic import tri_expectation

# The names people use for each phase.
PHASE_WORDS = {
    "ising_symmetry_breaking": ("Ising symmetry-breaking phase", "GHZ state", "ferromagnet", "ordered phase",
                                "cat state", "ising_symmetry_breaking"),
    "spt_cluster": ("SPT cluster phase", "cluster state", "SPT phase", "symmetry-protected topological phase",
                    "spt_cluster"),
    "trivial_product": ("trivial product state", "paramagnet", "product state", "trivial phase", "trivial_product"),
    "pseudorandom": ("pseudorandom phase", "scrambled state", "random circuit", "random brickwork circuit",
                     "pseudorandom"),
}
# Request wordings per tool: the last two of each are held out for the evaluation. {what} is the phase in words,
# {details} the stated arguments ("10 qubits, depth 6, seed 3"), possibly empty.
REQUESTS = {
    "run_phase": (
        "Please run a phase experiment on the {what}{details}.",
        "What does the lab measure for the {what}{details}? Run it.",
        "Which features does the {what} show{details}? Please run it.",
        "Can you simulate the {what}{details}?",
        "Measure the features of the {what}{details}.",
        "Run the {what} in the lab{details}.",
        "I need a fresh run of the {what}{details}.",
        "Let's look at the {what}{details}: run it.",
        "Could you do a run_phase experiment for the {what}{details}?",
        "Get me the lab's numbers for the {what}{details}.",
        "What are the measured features of the {what}{details}? I need the lab's values.",
        "Show me what the lab reports for the {what}{details}.",
        "Give me the lab's measurements for the {what}{details}.",
    ),
    "tri": (
        "What is the TRI of the {what}{details}?",
        "Does the {what} remember its tilt under time reversal{details}? Test it.",
        "How large is the time-reversal instability of the {what}{details}? Please run the test.",
        "Would the {what} survive a time-reversal test{details}? Run it.",
        "Run a TRI test on the {what}{details}.",
        "How time-reversal unstable is the {what}{details}?",
        "Check the time-reversal instability of the {what}{details}.",
        "Measure TRI for the {what}{details}.",
        "How stable is the {what} under time reversal{details}? Run the test.",
        "Test the time-reversal stability of the {what}{details}.",
        "What TRI do you get for the {what}{details}?",
        "Which TRI value comes out for the {what}{details}? Run it.",
        "What TRI would the lab report for the {what}{details}?",
        "Is the {what} time-reversal stable{details}? Please test it.",
        "What TRI does the lab measure for the {what}{details}?",
    ),
    "replay_drift": (
        "Does the {what} drift as the circuit gets deeper{details}?",
        "Does the drift of the {what} keep growing with depth{details}? Please measure it.",
        "Do the features of the {what} stay put as layers are added{details}? Run the sweep.",
        "Is the {what} stable with depth or does it drift{details}? Test it.",
        "Run a replay-drift sweep of the {what}{details}.",
        "How stable are the features of the {what} with depth{details}?",
        "Measure the replay drift of the {what}{details}.",
        "Does the drift of the {what} grow, level off or stay flat with depth{details}? Measure it.",
        "Check whether the {what} drifts as layers are added{details}.",
        "Does the drift of the {what} grow, saturate or stay flat{details}? Run the sweep.",
        "Is the drift trend of the {what} flat, saturating or growing{details}? Measure it.",
        "Which drift trend does the {what} show{details}?",
        "Is the drift of the {what} growing, saturating or flat{details}? Run it.",
        "Sweep the depth of the {what}{details} and tell me how it drifts.",
    ),
    "discovery": (
        "Run phase discovery on {what}{details}.",
        "Can the lab find the phases of {what} on its own{details}? Run it.",
        "Can k-means tell {what} apart{details}?",
        "Cluster {what} without labels{details}.",
        "Run unsupervised discovery over {what}{details}.",
        "Cluster {what}{details} and tell me how pure the clusters are.",
        "Run discovery on {what}{details} and give me the purity and ARI.",
        "How cleanly does k-means split {what}{details}? Run it.",
        "Are {what} distinguishable without labels{details}? Find out with the lab.",
        "Do {what} form separate clusters{details}? Check it in the lab.",
        "How well do {what} separate in feature space{details}? Run discovery.",
        "Do a discovery run with {what}{details} and report the purity.",
    ),
}
PLAIN_MEASUREMENT_QUESTIONS = {  # measurement questions put without a result, under the plain system prompt
    "tri": ("What is the TRI of the {what}{details}?", "How large is the time-reversal instability of the {what}{details}?",
            "What TRI value would I get for the {what}{details}?", "Is the TRI of the {what} large{details}?",
            "Tell me the TRI of the {what}{details}.", "What TRI does the {what} have{details}?",
            "Give me the TRI value for the {what}{details}.", "How big is TRI for the {what}{details}?"),
    "entanglement": ("What is the half-chain entanglement entropy of the {what}{details}?",
                     "What entanglement value does the {what} give{details}?",
                     "How entangled is the {what}{details}?", "What entanglement entropy does the {what} have{details}?",
                     "Tell me the entanglement of the {what}{details}.",
                     "How much entanglement is there across the middle of the {what}{details}?",
                     "What is the von Neumann entropy of half the {what}{details}?"),
    "magnetization": ("What is the magnetization of the {what}{details}?", "What average Z does the {what} show{details}?",
                      "What magnetization value do I get for the {what}{details}?",
                      "Tell me the magnetization the lab gets for the {what}{details}.",
                      "How magnetized is the {what}{details}?",
                      "What magnetization would the {what} have{details}?",
                      "Give me the mean Z magnetization of the {what}{details}."),
    "string_order": ("What is the string order of the {what}{details}?", "How large is string_order for the {what}{details}?",
                     "What string_order value does the {what} give{details}?",
                     "Tell me the string order parameter of the {what}{details}.",
                     "What string order does the {what} reach{details}?",
                     "What is the value of string_order for the {what}{details}?",
                     "Give me the string order of the {what}{details}."),
}
HELD_OUT = 2


def wordings(table: tuple[str, ...], split: str) -> tuple[str, ...]:
    return table[:-HELD_OUT] if split == "train" else table[-HELD_OUT:]


def phase_words(rng: random.Random, phase: str) -> str:
    return rng.choice(PHASE_WORDS[phase])


# How each stated argument reads in a request: the first form half the time, the last only in the evaluation. Run
# 29's training stated every argument one way, in one order, and its chat answered "What TRI does the lab measure
# for the GHZ state at bias 0.8, 10 qubits?" with an argument no tool takes ("bias_nearest").
DETAIL_FORMS = {
    "system_size": ("{} qubits", "with {} qubits", "on {} qubits", "N={}", "system size {}", "at {} qubits", "N = {}"),
    "depth": ("depth {}", "{} layers", "depth={}", "with {} layers", "at depth {}"),
    "base_depth": ("base depth {}", "base_depth={}", "starting at depth {}"),
    # the last form of each is held out; run 32 sent "8 samples per phase" as a second system_size
    "num_per_phase": ("{} runs each", "{} runs per phase", "{} per phase", "{} experiments per phase",
                      "num_per_phase={}", "{} samples per phase"),
    "k": ("k={}", "k = {}", "{} clusters"),
    "bias": ("bias {:g}", "at bias {:g}", "bias={:g}", "b = {:g}", "with bias {:g}"),
    "noise": ("noise {:g}", "noise level {:g}", "noise={:g}", "with noise {:g}"),
    "seed": ("seed {}", "seed={}", "random seed {}", "with seed {}"),
}
# Forms trained only, beside DETAIL_FORMS' (kept apart so the held-out requests are drawn as before): k as a count
# of groups; trained on "k=3" alone, runs 62, 65 and 66 sent the held-out "3 clusters" as "num_per_cluster" or
# "cluster_size".
TRAINED_ONLY_FORMS = {"k": ("into {} groups", "{} groups", "with k set to {}")}
PREPOSITIONS = ("with ", "on ", "at ", "starting ")


def detail_form(rng: random.Random, key: str, split: str) -> str:
    forms = DETAIL_FORMS[key]
    others = forms[1:-1] + TRAINED_ONLY_FORMS.get(key, ()) if split == "train" else forms[1:]
    return forms[0] if not others or rng.random() < 0.5 else rng.choice(others)


def details_text(rng: random.Random, args: dict, split: str) -> str:
    """The stated arguments in the order of `args` (the TOOL line's), each in one of its forms: ", 10 qubits, depth
    6" or " at bias 0.8, N=10"."""
    parts = [detail_form(rng, key, split).format(value) for key, value in args.items()]
    if not parts:
        return ""
    return (" " if parts[0].startswith(PREPOSITIONS) else ", ") + ", ".join(parts)


def draw_args(rng: random.Random, tool: str, seed: int) -> dict:
    """A request's arguments: the phase always, the rest stated sometimes and left to the lab's defaults otherwise."""
    maybe = lambda p: rng.random() < p  # noqa: E731
    if tool == "discovery":
        # "all four phases" lists all four too: a TOOL line with "phases" only sometimes was left half written
        phases = sorted(rng.sample(PHASES, rng.choice([2, 3])), key=PHASES.index) if maybe(0.6) else list(PHASES)
        args: dict = {"phases": phases, "num_per_phase": rng.choice([5, 6, 8, 10])}
        if maybe(0.3) and len(phases) > 2:
            args["k"] = len(phases) - 1
        args["system_size"] = rng.choice([8, 10])
        if maybe(0.5):
            args["noise"] = rng.choice([0.02, 0.1, 0.3, 0.5])
        args["seed"] = seed
        return in_request_order(rng, args)
    args = {"phase_type": rng.choice(PHASES)}
    if tool == "replay_drift":
        args["system_size"] = rng.choice([6, 8, 10])
        if maybe(0.6):
            args["base_depth"] = rng.choice([1, 2, 4])
        if maybe(0.6):
            args["noise"] = rng.choice([0.0, 0.02, 0.1])
        args["seed"] = seed
        return in_request_order(rng, args)
    # Size left out half the time and depth stated often, so that "depth 6" alone is never read as 6 qubits: with
    # depth alone in 11 of 71 requests (sizes 0.65, depth 0.6), 4 of the 4 held-out TRI requests stating depth alone
    # came back as system_size.
    if maybe(0.5):
        args["system_size"] = rng.choice([6, 8, 10, 12, 14])
    if maybe(0.7):
        args["depth"] = rng.choice([2, 4, 6, 8, 12, 16])
    if tool == "tri" and maybe(0.75):  # below 0.5 too: run 29's chat sent "bias 0.3" as an argument no tool takes
        args["bias"] = rng.choice([0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.55, 0.6, 0.65, 0.75, 0.8, 0.85, 0.9, 0.95])
    if tool == "run_phase" and maybe(0.25):
        args["bias"] = rng.choice([0.4, 0.6, 0.7])
    if tool == "run_phase" and maybe(0.25):
        args["noise"] = rng.choice([0.0, 0.02, 0.1])
    if maybe(0.8):
        args["seed"] = seed
    return in_request_order(rng, args)


def in_request_order(rng: random.Random, args: dict) -> dict:
    """The arguments in the order the request states them, which the TOOL line copies left to right (a line ordered
    otherwise put "8 qubits, 10 runs each" as num_per_phase 8): the phase first, then the rest in DETAIL_FORMS' order,
    or shuffled in four requests of ten, as people state them."""
    stated = [key for key in DETAIL_FORMS if key in args]
    if rng.random() < 0.4:
        rng.shuffle(stated)
    return {key: args[key] for key in ("phase_type", "phases", *stated) if key in args}


def stated_args(rng: random.Random, tool: str, params: dict) -> dict:
    """A run's parameters as a person asks for it: the phase and seed always, the lab's defaults left out half the
    time and the rest stated, so the TOOL line reproduces exactly the run that was made."""
    defaults = tools.TOOL_DEFAULTS[tool]
    args = {key: value for key, value in params.items()
            if key in ("phase_type", "seed") or value != defaults.get(key) or rng.random() < 0.5}
    return in_request_order(rng, args)


def request_text(rng: random.Random, tool: str, args: dict, split: str) -> str:
    if tool == "discovery":
        # the phases in the names people use as well: runs 56-59 sent "Run discovery on the GHZ state and the
        # paramagnet" as all four phases, trained on the lab's names alone
        named = [word if word in PHASES else f"the {word}" for word in (phase_words(rng, p) for p in args["phases"])]
        what = " and ".join(", ".join(named).rsplit(", ", 1)) if len(named) < len(PHASES) else "all four phases"
        rest = {k: v for k, v in args.items() if k != "phases"}
        return rng.choice(wordings(REQUESTS[tool], split)).format(what=what, details=details_text(rng, rest, split))
    rest = {k: v for k, v in args.items() if k != "phase_type"}
    return rng.choice(wordings(REQUESTS[tool], split)).format(what=phase_words(rng, args["phase_type"]),
                                                               details=details_text(rng, rest, split))


def chat_sample(kind: str, messages: list[dict], params: dict, quotes: Quotes, **meta) -> dict:
    """A sample in the common schema; instruction/input/output mirror the first question and the last answer."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    return {"instruction": user, "input": "", "output": messages[-1]["content"],
            "meta": {"kind": kind, "params": params, "values": quotes.values, **meta}, "messages": messages}


def tool_call_sample(rng: random.Random, tool: str, args: dict, split: str, kind: str = "tool_call") -> dict:
    system = rng.choice(tools.TRAIN_PROTOCOL_PROMPTS if split == "train" else tools.HELD_OUT_PROTOCOL_PROMPTS)
    call = tools.ToolCall(tool, args)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": request_text(rng, tool, args, split)},
                {"role": "assistant", "content": call.line()}]
    return chat_sample(kind, messages, args, Quotes(), call={"name": tool, "args": args})


# Names a model puts where the lab's argument belongs: run 27's chat sent "10 qubits" to /tri as num_per_phase.
# Run 31 wrote "N" for "N=14" and "num_samples" for "8 samples per phase".
MISNAMED_ARGS = {"system_size": ("num_per_phase", "qubits", "n_qubits", "size", "N"),
                 "depth": ("layers", "num_layers"), "phase_type": ("phase", "state"),
                 "phases": ("phase_type", "phase_list"), "seed": ("random_seed",),
                 "num_per_phase": ("num_samples", "samples_per_phase", "runs_per_phase")}


# Arguments a model adds that no tool takes: run 28's chat sent discovery "pseudorandom": 100 four times over.
EXTRA_ARGS = ("qubits", "runs", "shots", "samples", "steps") + PHASES


def tool_retry_sample(rng: random.Random, tool: str, args: dict, split: str, kind: str = "tool_retry") -> dict:
    """A TOOL line with a misnamed argument or one no tool takes, the error chat_with_lab.py sends back for it
    (tools.parse_tool_call's own message), and the corrected line (renamed, or without the extra argument). Only
    the correction is trained: the refused line is marked `"train": false`, so the model learns to read the error
    and fix the call, never to write the wrong one."""
    misnamed = [key for key in args if key in MISNAMED_ARGS]
    if rng.random() < 0.3:
        extra = rng.choice([name for name in EXTRA_ARGS if name not in tools.TOOL_ARGS[tool]])
        stated = [v for v in args.values() if isinstance(v, (int, float))]  # a number of the request, misplaced
        wrong_line = tools.tool_line(tool, {**args, extra: rng.choice(stated)})
    else:
        key = "system_size" if "system_size" in misnamed and rng.random() < 0.6 else rng.choice(misnamed)
        wrong_name = rng.choice([name for name in MISNAMED_ARGS[key] if name not in tools.TOOL_ARGS[tool]])
        wrong_line = tools.tool_line(tool, {(wrong_name if k == key else k): v for k, v in args.items()})
    try:
        tools.parse_tool_call(wrong_line)
        raise AssertionError(f"{wrong_line} should have been refused")
    except tools.ToolError as error:
        refusal = tools.error_message(str(error))
    sample = tool_call_sample(rng, tool, args, split, kind)
    system, request, correct = sample["messages"]
    sample["messages"] = [system, request, {"role": "assistant", "content": wrong_line, "train": False},
                          {"role": "user", "content": refusal}, correct]
    return sample


# ---------------------------------------------------------------- explaining a lab result


def explain_result(tool: str, response: dict, args: dict) -> str:
    """What the lab measured, quoted by field name (its leading digits), and what it means for this run. A phase
    run names its phase: the explanation copies the name and shows that phase's fingerprint."""
    q = Quotes(cut=True)
    if tool == "run_phase":
        values, phase = measurements(response), response["phase_type"]
        if not samples.has_physics(values):  # the original lab: quote what it returned, claim nothing beyond it
            listing = ", ".join(f"{name} {q(name, value)}" for name, value in sorted(values.items()))
            return f"The lab ran {phase} (experiment {response['experiment_id']}) and reported {listing}."
        return (f"phase_type is {phase}; " + samples.named_phase_reasoning(values, phase, q)
                + samples.noise_note(response["params"], phase))
    if tool == "tri":
        return samples.tri_text(response, q)
    if tool == "replay_drift":
        return samples.drift_result_text(response, q)
    return samples.discovery_text(response, args, q)


def tool_result_sample(rng: random.Random, tool: str, args: dict, response: dict, split: str,
                       kind: str = "tool_result") -> dict:
    system = rng.choice(tools.TRAIN_PROTOCOL_PROMPTS if split == "train" else tools.HELD_OUT_PROTOCOL_PROMPTS)
    call = tools.ToolCall(tool, args)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": request_text(rng, tool, args, split)},
        {"role": "assistant", "content": call.line()},
        {"role": "user", "content": tools.result_message(response)},
        {"role": "assistant", "content": explain_result(tool, response, args)},
    ]
    meta = {"call": {"name": tool, "args": args}}
    if tool == "run_phase":  # the result names its phase, in the original lab's results too
        meta.update(answer=response["phase_type"], choices=list(PHASES))
    if tool == "replay_drift" and response.get("feature_names"):
        meta.update(answer=samples.drift_class(response), choices=list(samples.DRIFT_CLASSES))
    return chat_sample(kind, messages, args, Quotes(), **meta)


FOLLOW_UPS = (
    ("string_order", "What was the string order in that run?"),
    ("entanglement_norm", "And how entangled was it, relative to the Page value?"),
    ("x_magnetization", "What was <X> there?"),
    ("abs_magnetization", "What |m| did the shots give?"),
    ("zz_long_range", "How large was the long-range ZZ correlation?"),
    ("randomness", "How random were the measured bits?"),
)


def follow_up_sample(rng: random.Random, args: dict, response: dict) -> dict:
    """A question about a result already in the conversation: answered from it, no new TOOL call."""
    base = tool_result_sample(rng, "run_phase", args, response, "train")
    name, question = rng.choice(FOLLOW_UPS)
    value = measurements(response)[name]
    answer = (f"From the result above (no new run needed): {name} was {Quotes()(name, value)} in that "
              f"{response['phase_type']} run.")
    messages = base["messages"] + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return chat_sample("follow_up", messages, args, Quotes())


SESSION_TOOLS = ("run_phase", "tri", "replay_drift")


def lab_session(rng: random.Random, tool: str, seed: int) -> dict:
    """A scripted held-out session for the evaluation: a request that chat_with_lab.py --once answers with a live
    lab; it counts when the tool calls ran and the final answer is right (the phase, the TRI, the drift trend)."""
    args = draw_args(rng, tool, seed)
    messages = [{"role": "system", "content": tools.LAB_LOOP_SYSTEM_PROMPT},
                {"role": "user", "content": request_text(rng, tool, args, "eval")},
                {"role": "assistant", "content": tools.tool_line(tool, args)}]
    return chat_sample("lab_session", messages, args, Quotes(), call={"name": tool, "args": args})


# ---------------------------------------------------------------- what the lab cannot run

LIMITS_SOURCE = "docs/lab/README.md"
UNKNOWN_PHASES = ("toric code", "Kitaev chain", "Heisenberg antiferromagnet", "Bose-Hubbard model", "spin glass",
                  "AKLT chain", "XY model")


def refusal_sample(rng: random.Random, split: str) -> dict:
    """A request outside the lab: a short answer with the limit, no TOOL line."""
    system = protocol_or_plain(rng)
    if rng.random() < 0.5:
        # Worded as the requests the lab runs, the size in any of its forms: only the number says no. Run 30,
        # trained on "Run the ... with 24 qubits." alone, refused "the cluster state with 10 qubits" too.
        n = rng.choice([21, 24, 25, 30, 32, 40, 50, 64, 100])
        tool = rng.choice(SESSION_TOOLS)
        args = {"phase_type": rng.choice(PHASES), "system_size": n}
        if rng.random() < 0.4:
            args["depth"] = rng.choice([2, 4, 8])
        question = request_text(rng, tool, in_request_order(rng, args), split)
        answer = size_answer(n)
    else:
        name = rng.choice(UNKNOWN_PHASES)
        question = rng.choice((f"Run a {name} experiment.", f"Can you simulate the {name} in the lab?",
                               f"Measure the string order of the {name}."))
        answer = (f"The lab has no {name}: its four phases are ising_symmetry_breaking, spt_cluster, "
                  "trivial_product and pseudorandom. Tell me which of those to run.")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question},
                {"role": "assistant", "content": answer}]
    return chat_sample("refusal", messages, {}, Quotes(), source=LIMITS_SOURCE)


def protocol_or_plain(rng: random.Random) -> str:
    """A training protocol prompt, or the plain prompt one time in five."""
    plain = (SYSTEM_PROMPT,) * (len(tools.TRAIN_PROTOCOL_PROMPTS) // 4)
    return rng.choice(tools.TRAIN_PROTOCOL_PROMPTS + plain)


def size_answer(n: int) -> str:
    """Whether the lab runs n qubits, from its limits (docs/lab/README.md): n compared digit by digit with the
    largest system, 20, then with the smallest, 4, before the verdict. Answers that began with the verdict ("The lab
    can run ...") picked it by the question's wording, not its number: trained on them, run 58 told 9 qubits "9 is
    above its limit of 20" and run 59 told 30 qubits "30 is within that"."""
    walk, sign = samples.digit_walk(str(n), "20")
    text = f"{n} qubits against the lab's largest system, 20: {walk}, so {n} {sign} 20"
    if sign == ">":
        return (f"{text}, and the lab cannot run {n} qubits: it keeps every amplitude of an exact state vector "
                "(system_size 4–20, and depth × 2^system_size ≤ 8,388,608). Ask for 20 qubits or fewer and I will "
                "run it.")
    walk, sign = samples.digit_walk(str(n), "4")
    text += f"; against its smallest, 4: {walk}, so {n} {sign} 4"
    if sign == "<":
        return f"{text}, and the lab cannot run {n} qubits (system_size 4–20). Ask for 4 to 20 qubits and I will run it."
    return (f"{text}, and the lab can run {n} qubits (system_size 4–20; depth × 2^system_size ≤ 8,388,608 limits the "
            "depth near the top: at 20 qubits, depth ≤ 8). Tell me which phase to run and I will run it.")


# The last two are held out for the evaluation.
SIZE_QUESTIONS = ("Can the lab run {n} qubits?", "Is {n} qubits too many for the lab?", "Could you simulate {n} spins?",
                  "Does the lab go up to {n} qubits?", "Can the simulator handle a {n}-qubit chain?",
                  "Would {n} qubits work in the lab?", "Is a {n}-qubit system within what the lab can do?",
                  "How about {n} qubits, can the lab do that?")


def size_question_sample(rng: random.Random, split: str) -> dict:
    """A question whether the lab can run N qubits (over, within or under its limits), answered from the limits
    with no TOOL line: run 56 answered "Can the lab run 24 qubits?" in chat_with_lab.py with a 24-qubit run. The
    evaluation asks it as chat_with_lab.py does; training under the protocol prompts or the plain one. Within the
    limits half the time: run 58, with 12 of 24, told 4 of 5 held-out sizes within them they were above."""
    draw = rng.random()
    n = rng.choice(list(range(4, 21)) if draw < 0.5 else [2, 3] if draw < 0.6 else
                   [21, 22, 24, 25, 28, 30, 32, 40, 50, 64, 100])
    system = tools.LAB_LOOP_SYSTEM_PROMPT if split == "eval" else protocol_or_plain(rng)
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": rng.choice(wordings(SIZE_QUESTIONS, split)).format(n=n)},
                {"role": "assistant", "content": size_answer(n)}]
    return chat_sample("size_question", messages, {}, Quotes(), source=LIMITS_SOURCE, system_size=n,
                       within_limits=4 <= n <= 20)


# ---------------------------------------------------------------- measurement questions without a result


def expectation(quantity: str, args: dict) -> str:
    """What theory expects (the caller labels it as expectation), derived step by step from the question's numbers."""
    phase, bias, n = args["phase_type"], args.get("bias", 0.5), args.get("system_size", 12)
    if quantity == "tri":
        if phase == "pseudorandom":
            return "a random circuit scrambles the initial tilt away, so TRI should be small."
        steps, _ = tri_expectation(bias)
        return f"the {phase} circuit keeps the spin-flip symmetry, so TRI should be about 2 × |2b − 1|: {steps}."
    if quantity == "entanglement":
        if phase == "trivial_product":
            return "a product state has zero entanglement."
        if phase == "pseudorandom":
            return (f"a deep random circuit approaches the Page value "
                    f"{n}/2 × ln 2 − 1/2 = {n / 2 * samples.LN2 - 0.5:.2f} nats.")
        return "at bias 0.5 the ideal state has ln 2 = 0.693 nats across the cut."
    if quantity == "magnetization":
        if phase == "pseudorandom":
            return "a scrambled state's magnetization should be near zero."
        return (f"the magnetization should follow the starting tilt, "
                f"2 × {bias:g} − 1 = {2 * bias - 1:.2f}.")
    if phase == "spt_cluster":
        return "near 1 for the cluster state, a little lower with noise and depth."
    return "near 0, since only the cluster state has string order."


EXPECTATION_MARK = "Expectation, not a measurement"
QUANTITY_NAMES = {"tri": "TRI", "entanglement": "half-chain entanglement", "magnetization": "magnetization",
                  "string_order": "string order"}


def expectation_of(answer: str) -> str | None:
    """The expectation a measure-it answer gives, from its label on ("Expectation, not a measurement, for the TRI of
    pseudorandom: ..."), or None."""
    start = answer.find(EXPECTATION_MARK)
    return " ".join(answer[start:].split()) if start >= 0 else None


def measurement_question_sample(rng: random.Random, split: str, seed: int, kind: str = "measurement") -> dict:
    """A number asked for with no result in the conversation, under the plain system prompt."""
    quantity = rng.choice(sorted(PLAIN_MEASUREMENT_QUESTIONS))
    tool = "tri" if quantity == "tri" else "run_phase"
    args = {"phase_type": rng.choice(PHASES), "system_size": rng.choice([8, 10, 12, 14])}
    if quantity in ("tri", "magnetization") and rng.random() < 0.8:
        args["bias"] = rng.choice([0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    if rng.random() < 0.4:
        args["depth"] = rng.choice([4, 8, 12])
    if rng.random() < 0.3:
        args["seed"] = seed
    args = in_request_order(rng, args)
    rest = {k: v for k, v in args.items() if k != "phase_type"}
    wording = rng.choice(wordings(PLAIN_MEASUREMENT_QUESTIONS[quantity], split))
    what = phase_words(rng, args["phase_type"])
    if rng.random() < (0.5 if split == "eval" else 0.3):
        # The size as "at 12 qubits" right after the phase, as the refusals of sizes over the limit put it: run 28,
        # trained on that form only there, answered "What is the string order of the cluster state at 12 qubits?"
        # with "The lab cannot run 12 qubits".
        what += f" at {rest.pop('system_size')} qubits"
    question = wording.format(what=what, details=details_text(rng, rest, split))
    answer = (f"That has to be measured: there is no lab result for it in this conversation, so I will not give a "
              f"number as measured. The {tool} experiment measures it: {tools.tool_line(tool, args)} "
              f"(chat_with_lab.py runs it for you). {EXPECTATION_MARK}, for the {QUANTITY_NAMES[quantity]} of "
              f"{args['phase_type']}: {expectation(quantity, args)}")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question},
                {"role": "assistant", "content": answer}]
    return chat_sample(kind, messages, args, Quotes(), call={"name": tool, "args": args})


# ---------------------------------------------------------------- the lab's concepts

# One in LOOP_SHARE of the questions that need no experiment (concepts here, the general replay in benlab/train.py)
# is asked under a TOOL-protocol prompt, so chat_with_lab.py's users get an answer, not a TOOL line.
LOOP_SHARE = 4


def loop_prompt(i: int) -> str:
    """The i-th training TOOL-protocol prompt, in turn."""
    return tools.TRAIN_PROTOCOL_PROMPTS[i % len(tools.TRAIN_PROTOCOL_PROMPTS)]


def concept_samples(split: str) -> list[dict]:
    """Every training phrasing of every concept (training) or the held-out phrasings (evaluation, with the key
    facts). One training question in LOOP_SHARE is put under a TOOL-protocol prompt, in turn, and the evaluation asks
    each held-out phrasing under chat_with_lab.py's prompt too (kind loop_concept): a question about the lab is
    answered, not run. Trained under the plain prompt alone, run 53 answered "What does replay drift measure in the
    lab?" under chat_with_lab.py's prompt with a sweep of the random circuit."""
    rows = []
    for concept in CONCEPTS:
        for question in concept.held_out if split == "eval" else training_questions(concept):
            systems = [("concept", SYSTEM_PROMPT)]
            if split == "eval":
                systems.append(("loop_concept", tools.LAB_LOOP_SYSTEM_PROMPT))
            elif len(rows) % LOOP_SHARE == LOOP_SHARE - 1:
                systems = [("concept", loop_prompt(len(rows) // LOOP_SHARE))]
            for kind, system in systems:
                messages = [{"role": "system", "content": system}, {"role": "user", "content": question},
                            {"role": "assistant", "content": concept.answer}]
                rows.append(chat_sample(kind, messages, {}, Quotes(), source=concept.source, concept=concept.name,
                                        facts=[list(f) for f in concept.facts]))
    return rows


PHASE_NAME_QUESTIONS = ("What does the lab call the {what}?", "Which phase_type should I ask for to get the {what}?",
                        "The {what}: which lab phase is that?", "What is the {what} named in the Jarvis lab?")


def phase_name_samples() -> list[dict]:
    """Each name people use for a phase -> the lab's phase_type, every wording: short, and what a TOOL line and a
    concept answer both need (a request for the "cat state" must say ising_symmetry_breaking)."""
    rows = []
    for phase, names in PHASE_WORDS.items():
        for i, name in enumerate(names):
            for j, wording in enumerate(PHASE_NAME_QUESTIONS):
                system = SYSTEM_PROMPT if (i + j) % 3 else loop_prompt(i + j)
                answer = (f"In the lab the {name} is phase_type {phase}: {PHASE_SUMMARIES[phase]}." if name != phase
                          else f"{phase} is already the lab's name: phase_type {phase}, {PHASE_SUMMARIES[phase]}.")
                messages = [{"role": "system", "content": system},
                            {"role": "user", "content": wording.format(what=name)},
                            {"role": "assistant", "content": answer}]
                rows.append(chat_sample("phase_name", messages, {"phase_type": phase}, Quotes(),
                                        source="docs/lab/phases.md"))
    return rows
