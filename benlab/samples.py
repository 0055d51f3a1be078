"""Turn lab results into instruction/answer samples whose answers quote the measured numbers and say what follows
from them under the lab's physics (docs/lab/). Pure functions: lab response dicts in, sample dicts out.

Every quoted number goes through a Quotes object, which records it in the sample's meta["values"], so tests can
check each quoted number against the lab's response. Question wording is picked from several families with a
seeded generator, so the model learns the lab rather than one phrasing.
"""

from __future__ import annotations

import json
import random

from benlab.lab import experiments
from benlab.prompts import SYSTEM_PROMPT

PHASES = ("ising_symmetry_breaking", "spt_cluster", "trivial_product", "pseudorandom")
DRIFT_CLASSES = ("Grows", "Saturates", "Flat")
PHASE_NAMES = {
    "ising_symmetry_breaking": "Ising symmetry-breaking (ordered) phase",
    "spt_cluster": "SPT cluster phase",
    "trivial_product": "trivial product (paramagnetic) phase",
    "pseudorandom": "pseudorandom (scrambled) phase",
}
STRUCTURED = ("ising_symmetry_breaking", "spt_cluster", "trivial_product")
LN2 = 0.6931471805599453
# Features shown in a phase-identification question, in this order (all of the new lab's feature_names).
SHOWN_FEATURES = (
    "magnetization",
    "abs_magnetization",
    "x_magnetization",
    "zz_nearest",
    "zz_long_range",
    "correlation_length_norm",
    "string_order",
    "stabilizer_mean",
    "entanglement_norm",
    "randomness",
)


class Quotes:
    """Formats numbers for an answer and remembers each one (name -> the value as quoted)."""

    def __init__(self):
        self.values: dict[str, float] = {}

    def __call__(self, name: str, value: float, digits: int = 3) -> str:
        text = f"{value:.{digits}f}"
        if text.startswith("-") and float(text) == 0:
            text = text[1:]
        self.values[name] = float(text)
        return text


def measurements(response: dict) -> dict[str, float]:
    """Named values of a phase-experiment response. The new lab names its features; the original Jarvis Lab
    returns an unnamed vector, so only its summary keys are used."""
    values = dict(response.get("summary") or {})
    names = response.get("feature_names")
    if names and len(names) == len(response.get("feature_vector", [])):
        values.update(zip(names, response["feature_vector"]))
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}


def has_physics(values: dict[str, float]) -> bool:
    """Whether a response carries the new lab's physical features (the original lab's do not)."""
    return all(name in values for name in SHOWN_FEATURES)


# Each structured phase's fingerprint: one feature that is high (> FINGERPRINT_LEVEL) for that phase only
# (docs/lab/features.md). A run that shows none of the three is pseudorandom.
FINGERPRINTS = (
    ("spt_cluster", "stabilizer_mean"),
    ("ising_symmetry_breaking", "correlation_length_norm"),
    ("trivial_product", "x_magnetization"),
)
FINGERPRINT_LEVEL = 0.5
ANSWER_MARK = "Answer:"  # checkable answers end with "Answer: <choice>." after the reasoning (see benlab/evaluate.py)


def fingerprint_phase(values: dict[str, float]) -> str:
    """The phase the features point to, checking the fingerprints in FINGERPRINTS order. The data generator
    checks this against the true phase and keeps only experiments whose fingerprint is unambiguous."""
    for phase, feature in FINGERPRINTS:
        if round(values[feature], 2) > FINGERPRINT_LEVEL:  # as quoted in the question, to 2 decimals
            return phase
    return "pseudorandom"


def fingerprint_reasoning(values: dict[str, float], q: Quotes) -> str:
    """The identification as the lab does it, one fingerprint at a time, each check written as a comparison with
    FINGERPRINT_LEVEL: a small model learns a comparison made next to the number (a phase name produced straight
    from ten numbers is not learned in a CPU-sized run)."""
    answer, checks = fingerprint_phase(values), []
    for phase, feature in FINGERPRINTS:
        value = q(feature, values[feature], 2)
        hit = phase == answer
        sign = ">" if hit else "<" if float(value) < FINGERPRINT_LEVEL else "="
        checks.append(f"{phase} needs {feature} > {FINGERPRINT_LEVEL}: here {value} {sign} {FINGERPRINT_LEVEL}, "
                      f"{'yes' if hit else 'no'}.")
        if hit:
            return " ".join(checks) + f" {ANSWER_MARK} {phase}. {IDENTIFIED[phase].format(**quoted(values, q))}"
    return (" ".join(checks) + f" None fits, so the state is scrambled. {ANSWER_MARK} pseudorandom. "
            + IDENTIFIED["pseudorandom"].format(**quoted(values, q)))


def quoted(values: dict[str, float], q: Quotes) -> dict[str, str]:
    return {name: q(name, values[name], 2) for name in SHOWN_FEATURES}


# What the identified phase means, after the answer, with the numbers that show it.
IDENTIFIED = {
    "spt_cluster": "Hidden topological order: string order {string_order}, entanglement {entanglement_norm}.",
    "ising_symmetry_breaking": "Each shot is ordered: |m| {abs_magnetization}, magnetization {magnetization}.",
    "trivial_product": "Independent qubits along X: entanglement {entanglement_norm}, magnetization {magnetization}.",
    "pseudorandom": "Scrambled: entanglement {entanglement_norm}, randomness {randomness}.",
}


def run_label(params: dict) -> str:
    bias = params.get("bias")
    bias_text = "" if bias is None else f", bias {bias:g}"
    return f"{params['phase_type']} (N={params['system_size']}, depth {params['depth']}{bias_text}, seed {params['seed']})"


def make_sample(kind: str, instruction: str, input_text: str, output: str, params: dict, quotes: Quotes, **meta) -> dict:
    user = instruction if not input_text else f"{instruction}\n\n{input_text}"
    return {
        "instruction": instruction,
        "input": input_text,
        "output": output,
        "meta": {"kind": kind, "params": params, "values": quotes.values, **meta},
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
            {"role": "assistant", "content": output},
        ],
    }


# ---------------------------------------------------------------- phase experiments


def evidence(phase: str, v: dict[str, float], q: Quotes) -> str:
    """Why the measured numbers are this phase's fingerprint."""
    if phase == "ising_symmetry_breaking":
        return (
            f"every shot is ordered (mean |m| = {q('abs_magnetization', v['abs_magnetization'])}), ZZ at half the "
            f"chain is {q('zz_long_range', v['zz_long_range'])} and the correlation length spans "
            f"{q('correlation_length_norm', v['correlation_length_norm'])} of the chain: long-range order. The average "
            f"magnetization {q('magnetization', v['magnetization'])} only follows the bias, because each measurement "
            "collapses the cat state into all-up or all-down: the Z2 symmetry breaks shot by shot"
        )
    if phase == "spt_cluster":
        return (
            f"the string order is {q('string_order', v['string_order'])} and the mean stabilizer ZXZ is "
            f"{q('stabilizer_mean', v['stabilizer_mean'])}, while the connected two-point correlations vanish "
            f"(correlation length {q('correlation_length_norm', v['correlation_length_norm'])} of the chain) and "
            f"<X> is {q('x_magnetization', v['x_magnetization'])}; the Z-basis shots show no order either "
            f"(magnetization {q('magnetization', v['magnetization'])}, randomness {q('randomness', v['randomness'])}): "
            "hidden order that only the string sees, the signature of the symmetry-protected topological cluster state"
        )
    if phase == "trivial_product":
        return (
            f"the half-chain entanglement is {q('entanglement_norm', v['entanglement_norm'])} of the Page value (none), "
            f"<X> is {q('x_magnetization', v['x_magnetization'])} and there is no string order "
            f"({q('string_order', v['string_order'])}) or long-range correlation "
            f"({q('correlation_length_norm', v['correlation_length_norm'])}); the shots' magnetization "
            f"{q('magnetization', v['magnetization'])} and randomness {q('randomness', v['randomness'])} are those of "
            "independent qubits: every qubit points along its own axis, independently of the others"
        )
    text = (
        f"the entanglement is {q('entanglement_norm', v['entanglement_norm'])} of the Page value while every order "
        f"parameter is near zero (string order {q('string_order', v['string_order'])}, long-range ZZ "
        f"{q('zz_long_range', v['zz_long_range'])}, <X> {q('x_magnetization', v['x_magnetization'])}): the random "
        "brickwork has spread the information over the whole chain"
    )
    if v["entanglement_norm"] < 0.5:
        text += "; it is still below the Page value because the circuit is shallow compared with the chain"
    return text


def noise_note(params: dict, phase: str) -> str:
    if phase == "pseudorandom":
        return ""
    if params.get("noise", 0.0) == 0.0:
        return " With noise 0 the state is exactly the ideal state."
    return f" {params['depth']} layers of coherent errors (noise {params['noise']:g} rad) keep the order just below its ideal value."


EXPLAIN_PHASE = (
    "Run a {phase} experiment with N={n}, depth {depth}, bias {bias:g} and seed {seed}, and explain the result.",
    "What did the lab measure for {phase} at N={n}, depth {depth} (bias {bias:g}, seed {seed}), and what does it mean?",
    "Explain the outcome of this Jarvis lab run: {phase}, {n} qubits, depth {depth}, bias {bias:g}, seed {seed}.",
    "Summarise the physics of the {phase} experiment {experiment_id}.",
)
IDENTIFY_PHASE = (
    "Which phase produced these measurements?",
    "Identify the phase of this lab run.",
    "Which of the four phases is this unlabelled run?",
)
ENTANGLEMENT_QUESTION = (
    "How entangled is the final state of this {phase} run (N={n}, depth {depth}, seed {seed}), and what does that say?",
    "What is the half-chain entanglement entropy of {phase} at N={n}, depth {depth}, seed {seed}?",
    "Does the {phase} state from N={n}, depth {depth}, seed {seed} carry entanglement across the middle of the chain?",
)


def feature_table(v: dict[str, float], params: dict, q: Quotes) -> str:
    """The measurements to 2 decimals: enough to tell the phases apart, and short."""
    shown = ", ".join(f"{name}={q(name, v[name], 2)}" for name in SHOWN_FEATURES)
    return f"N={params['system_size']}, depth={params['depth']}: {shown}"


def phase_explanation(response: dict, rng: random.Random) -> dict:
    params, phase, v, q = response["params"], response["phase_type"], measurements(response), Quotes()
    fields = dict(phase=phase, n=params["system_size"], depth=params["depth"], bias=params.get("bias", 0.5),
                  seed=params["seed"], experiment_id=response["experiment_id"])
    instruction = rng.choice(EXPLAIN_PHASE).format(**fields)
    if has_physics(v):
        output = f"This is the {PHASE_NAMES[phase]}: {evidence(phase, v, q)}.{noise_note(params, phase)}"
    else:  # the original lab: quote what it returned, claim nothing beyond it
        quoted = ", ".join(f"{k} {q(k, val)}" for k, val in sorted(v.items()))
        output = f"The lab ran {run_label(params)} and reported {quoted} (experiment {response['experiment_id']})."
    return make_sample("phase_explanation", instruction, "", output, params, q, experiment_id=response["experiment_id"])


def phase_identification(response: dict, rng: random.Random, kind: str = "phase_identification") -> dict:
    params, v, q = response["params"], measurements(response), Quotes()
    table = feature_table(v, params, q)
    output = fingerprint_reasoning(v, Quotes())
    return make_sample(kind, rng.choice(IDENTIFY_PHASE), table, output, params, q,
                       experiment_id=response["experiment_id"], answer=response["phase_type"], choices=list(PHASES))


def entanglement_answer(response: dict, rng: random.Random) -> dict:
    params, phase, v, q = response["params"], response["phase_type"], measurements(response), Quotes()
    fields = dict(phase=phase, n=params["system_size"], depth=params["depth"], seed=params["seed"])
    s = q("entanglement_entropy", v["entanglement_entropy"])
    ideal_bond = abs(v["entanglement_entropy"] - LN2) < 1e-6
    if phase in ("ising_symmetry_breaking", "spt_cluster") and ideal_bond:
        meaning = (
            "ln 2 = 0.693 nats: exactly one Bell pair's worth across the cut, whatever the chain length. "
            + ("The cat state links the two halves by a single shared bit (all-up or all-down)."
               if phase == "ising_symmetry_breaking"
               else "The cluster state's entanglement is short-ranged: only the bond at the cut contributes.")
            + " Single-qubit errors cannot change it, so it stays ln 2 at any noise."
        )
    elif phase == "ising_symmetry_breaking":
        meaning = (
            f"below ln 2 = 0.693 because the bias {params['bias']:g} gives the two branches of the cat state unequal "
            "weights b and 1-b: the entropy is -b ln b - (1-b) ln(1-b), the uncertainty of which branch the chain is in."
        )
    elif phase == "spt_cluster":
        meaning = (
            f"below the ideal cluster state's ln 2 = 0.693 because the bias {params['bias']:g} tilts the qubits away "
            "from |+>, so the CZ bonds entangle less than maximally."
        )
    elif phase == "trivial_product":
        meaning = "zero: a product state, each qubit on its own, so nothing is shared across the cut."
    else:
        frac = q("entanglement_norm", v["entanglement_norm"])
        meaning = (
            f"{frac} of the Page value {q('page_entropy', v['page_entropy'])} nats that a Haar-random state of {params['system_size']} qubits has. "
            + ("The random circuit has scrambled the chain almost completely."
               if v["entanglement_norm"] >= 0.9
               else "Entanglement is still growing with depth; it reaches the Page value once the depth is about twice the chain length.")
        )
    output = f"The half-chain entanglement entropy is {s} nats, which is {meaning}"
    return make_sample("entanglement", rng.choice(ENTANGLEMENT_QUESTION).format(**fields), "", output, params, q,
                       experiment_id=response["experiment_id"])


# ---------------------------------------------------------------- TRI


EXPLAIN_TRI = (
    "Run a TRI test on {phase} (N={n}, depth {depth}, bias {bias:g}, seed {seed}). What is the TRI and what does it imply?",
    "What does the time-reversal instability of {phase} at bias {bias:g} (N={n}, depth {depth}, seed {seed}) tell us?",
    "Interpret this TRI measurement: {phase}, N={n}, depth {depth}, forward bias {bias:g}, seed {seed}.",
)


def tri_reason(phase: str, bias: float, tri: float) -> str:
    expected = 2 * abs(2 * bias - 1)
    if phase in STRUCTURED and abs(tri - expected) <= 0.15:
        return (
            "the circuit respects the spin-flip symmetry, so mirroring the bias only flips the magnetization and "
            f"TRI is close to 2|2b-1| = {expected:.2f}: the final state remembers its initial tilt"
        )
    if phase in STRUCTURED:
        return (
            f"a perfectly symmetric circuit would give 2|2b-1| = {expected:.2f}; the difference comes from the "
            "noise and the finite number of shots"
        )
    return "the random brickwork scrambles the initial tilt away, so the forward and reverse runs differ only by fluctuations"


def tri_explanation(response: dict, rng: random.Random) -> dict:
    params, q = response["params"], Quotes()
    phase, bias = params["phase_type"], params["bias"]
    fields = dict(phase=phase, n=params["system_size"], depth=params["depth"], bias=bias, seed=params["seed"])
    tri = q("TRI", response["TRI"])
    text = f"TRI = {tri}"
    names = response.get("feature_names")
    if names and "magnetization" in names:
        m = names.index("magnetization")
        text += (
            f": the magnetization is {q('forward_magnetization', response['forward_features'][m])} at bias {bias:g} "
            f"and {q('reverse_magnetization', response['reverse_features'][m])} at bias {1 - bias:g}"
        )
        level = "high" if response["TRI"] >= 0.3 else "low"
        text += f". That is {level}: {tri_reason(phase, bias, response['TRI'])}."
    else:
        text += f", the L2 distance between the feature vectors at bias {bias:g} and {1 - bias:g}."
    if "loschmidt_echo" in response:
        echo = q("loschmidt_echo", response["loschmidt_echo"])
        if phase == "ising_symmetry_breaking":
            why = "the cat state's two branches pick up a phase difference N times larger than one qubit does, so it is the most fragile"
        elif phase == "pseudorandom":
            why = "the random gates scramble the small kicks between layers, so they add up incoherently and barely matter"
        else:
            why = "the small kicks add up coherently qubit by qubit, a slow decay"
        text += f" The Loschmidt echo (forward, then a slightly perturbed reverse) returns with probability {echo}: {why}."
    return make_sample("tri_explanation", rng.choice(EXPLAIN_TRI).format(**fields), "", text, params, q,
                       experiment_id=response["forward_id"])


COMPARE_TRI = (
    "Which of these two runs has the larger TRI? Explain, then answer Run A or Run B.",
    "Two TRI tests were run in the Jarvis lab. Which one shows the larger time-reversal instability, Run A or Run B?",
    "Compare the time-reversal instability of these runs: is it larger for Run A or Run B?",
)


def tri_comparison(a: dict, b: dict, rng: random.Random, kind: str = "tri_comparison") -> dict:
    q = Quotes()
    pa, pb = a["params"], b["params"]
    input_text = f"Run A: {run_label(pa)}. Run B: {run_label(pb)}."
    winner, loser, wp, lp = ("Run A", "Run B", pa, pb) if a["TRI"] > b["TRI"] else ("Run B", "Run A", pb, pa)
    ta, tb = q("TRI_A", a["TRI"]), q("TRI_B", b["TRI"])
    if wp["phase_type"] in STRUCTURED and lp["phase_type"] == "pseudorandom":
        why = (f"{winner}'s {wp['phase_type']} circuit keeps the spin-flip symmetry, so its TRI is about 2|2b-1| = "
               f"{2 * abs(2 * wp['bias'] - 1):.2f}, while {loser}'s pseudorandom circuit scrambles the initial tilt away")
    elif wp["phase_type"] in STRUCTURED and lp["phase_type"] in STRUCTURED:
        why = (f"both circuits keep the spin-flip symmetry, so TRI is about 2|2b-1|, and {winner}'s bias "
               f"{wp['bias']:g} is further from 0.5 than {loser}'s {lp['bias']:g}")
    else:
        why = (f"{loser}'s bias {lp['bias']:g} is so close to 0.5 that mirroring it hardly changes anything, "
               "while the scrambled pseudorandom run still differs by random-state fluctuations")
    output = f"{why[0].upper()}{why[1:]}: the lab measured TRI {ta} for Run A and {tb} for Run B. {ANSWER_MARK} {winner}."
    params = {"run_a": pa, "run_b": pb}
    return make_sample(kind, rng.choice(COMPARE_TRI), input_text, output, params, q,
                       experiment_id=[a["forward_id"], b["forward_id"]], answer=winner, choices=["Run A", "Run B"])


def comparable(a: dict, b: dict) -> bool:
    """A pair whose TRI ordering is a physical fact, not a coin flip between two fluctuations."""
    both_random = a["params"]["phase_type"] == b["params"]["phase_type"] == "pseudorandom"
    return not both_random and abs(a["TRI"] - b["TRI"]) >= 0.15


# ---------------------------------------------------------------- replay drift


EXPLAIN_DRIFT = (
    "Run a replay-drift sweep of {phase} (N={n}, base depth {base}, factors {factors}, noise {noise:g}, seed {seed}) and explain it.",
    "How do the features of {phase} drift as the circuit gets deeper (N={n}, depths {depths}, noise {noise:g}, seed {seed})?",
    "Explain the replay drift of {phase} from depth {base} to {last} at N={n} (noise {noise:g}, seed {seed}).",
)
CLASSIFY_DRIFT = (
    "Does the drift grow, saturate or stay flat? Explain, then answer Grows, Saturates or Flat.",
    "Classify this replay-drift sweep as Grows, Saturates or Flat.",
    "Looking at these drifts, does the lab's replay drift grow, saturate, or stay flat?",
)


def drift_class(response: dict) -> str:
    runs = response["runs"]
    trend = response.get("drift_trend") or experiments.drift_trend([r["depth"] for r in runs], [r["drift"] for r in runs])
    return trend.capitalize()


def drift_reason(response: dict, params: dict, cls: str, q: Quotes) -> str:
    runs = response["runs"]
    phase = response["phase_type"]
    if cls == "Flat":
        if phase in STRUCTURED and params.get("noise") == 0.0:
            return "with noise 0 the extra layers are idle, so the state and every feature stay exactly the same"
        return f"no run moved {experiments.FLAT_DRIFT} or more from the first, so depth changes nothing measurable here"
    depths, drifts = [r["depth"] for r in runs], [r["drift"] for r in runs]
    last_rate = (drifts[-1] - drifts[-2]) / (depths[-1] - depths[-2]) if len(runs) > 2 else None
    mean_rate = drifts[-1] / (depths[-1] - depths[0])
    rate_text = ""
    if last_rate is not None and mean_rate > 0 and last_rate < 0:
        rate_text = f"; the drift even fell in the last step, from {drifts[-2]:.3f} to {drifts[-1]:.3f}"
    elif last_rate is not None and mean_rate > 0:
        rate_text = (f"; the last step added drift at {q('rate_ratio', last_rate / mean_rate, 2)} times the "
                     "sweep's average rate per layer")
    if cls == "Saturates":
        if phase == "pseudorandom":
            why = ("once the brickwork has scrambled the chain, every deeper state is just another random state, "
                   "so the drift levels off at the size of random-state fluctuations")
        else:
            why = ("the coherent errors perform a random walk, and in this sweep the last step happened to add "
                   "little: for structured phases this is chance, the typical trend is growth")
        return f"it levelled off{rate_text}: {why}"
    if phase == "pseudorandom":
        why = "the circuit is still scrambling: entanglement keeps rising towards the Page value as layers are added"
    else:
        why = ("coherent errors accumulate like a random walk, so the order parameters keep decaying, roughly in "
               "proportion to the depth")
    return f"it keeps increasing{rate_text}: {why}"


def drift_table(response: dict, q: Quotes) -> str:
    cells = []
    for run in response["runs"]:
        depth = run["depth"]
        cells.append(f"depth {depth}: {q(f'drift_{depth}', run['drift'])}")
    return ", ".join(cells)


def drift_explanation(response: dict, params: dict, rng: random.Random) -> dict:
    q = Quotes()
    depths = [r["depth"] for r in response["runs"]]
    fields = dict(phase=response["phase_type"], n=params["system_size"], base=response["base_depth"],
                  factors=params["depth_factors"], noise=params.get("noise", 0.05), seed=params["seed"],
                  depths=depths, last=depths[-1])
    cls = drift_class(response)
    verb = {"Flat": "stays flat", "Grows": "grows", "Saturates": "saturates"}[cls]
    output = (f"The {response['phase_type']} drift at N={params['system_size']} {verb}. "
              f"Distance of each run's features from the depth-{depths[0]} run: {drift_table(response, q)}. "
              f"{drift_reason(response, params, cls, q).capitalize()}.")
    return make_sample("drift_explanation", rng.choice(EXPLAIN_DRIFT).format(**fields), "", output, params, q,
                       experiment_id=[r["id"] for r in response["runs"]])


def drift_classification(response: dict, params: dict, rng: random.Random, kind: str = "drift_class") -> dict:
    q = Quotes()
    input_text = (f"Replay drift of {response['phase_type']} at N={params['system_size']}, noise "
                  f"{params.get('noise', 0.05):g}, seed {params['seed']}: {drift_table(response, q)}.")
    cls = drift_class(response)
    largest = max(r["drift"] for r in response["runs"])
    output = (f"The largest drift of this {response['phase_type']} sweep (depths "
              f"{response['runs'][0]['depth']}-{response['runs'][-1]['depth']}) is {largest:.3f}; "
              f"{drift_reason(response, params, cls, Quotes())}. {ANSWER_MARK} {cls}.")
    return make_sample(kind, rng.choice(CLASSIFY_DRIFT), input_text, output, params, q,
                       experiment_id=[r["id"] for r in response["runs"]], answer=cls, choices=list(DRIFT_CLASSES))


# ---------------------------------------------------------------- discovery


EXPLAIN_DISCOVERY = (
    "Run unsupervised discovery on {phases} ({num} runs each, k={k}, N={n}, depth {depth}, noise {noise:g}) and explain the clusters.",
    "KMeans was run on the lab features of {phases} with k={k} ({num} runs per phase, N={n}, depth {depth}, noise {noise:g}). Which clusters are clean and which mix, and why?",
    "Interpret this phase-discovery result: {phases}, {num} runs per phase, k={k}, N={n}, depth {depth}, noise {noise:g}.",
)


def discovery_explanation(response: dict, request: dict, rng: random.Random) -> dict:
    """`request` is the body sent: the original lab does not echo its parameters back."""
    q = Quotes()
    params = {"noise": 0.05, **request, **(response.get("params") or {})}
    phases = response.get("phases") or request["phases"]
    k = response["num_clusters"]
    num = response["num_samples"] // max(len(phases), 1)
    fields = dict(phases=", ".join(phases), num=num, k=k, n=params.get("system_size", "?"),
                  depth=params.get("depth", "?"), noise=params.get("noise", 0.05))
    stats = response["cluster_label_stats"]
    parts = []
    for i, counts in enumerate(stats, start=1):
        listing = " and ".join(f"{c} {p}" for p, c in counts.items()) or "no runs"
        parts.append(f"cluster {i} holds {listing}" + (" (clean)" if len(counts) == 1 else " (mixed)"))
    mixed = [c for c in stats if len(c) > 1]
    text = (f"KMeans with k={k} on {response['num_samples']} runs (N={fields['n']}, depth {fields['depth']}, noise "
            f"{fields['noise']:g}): " + "; ".join(parts) + ".")
    if "adjusted_rand_index" not in response:  # the original lab: report its counts, claim no physics
        return make_sample("discovery_explanation", rng.choice(EXPLAIN_DISCOVERY).format(**fields), "", text, params, q)
    text += (f" Purity {q('purity', response['purity'])} and adjusted Rand index "
             f"{q('adjusted_rand_index', response['adjusted_rand_index'])}.")
    if not mixed:
        text += (" Every phase has its own cluster because each has its own fingerprint: ZZ order for ising, "
                 "string order for the cluster phase, <X> for the product state, entanglement for pseudorandom.")
    elif k < len(phases):
        merged = " and ".join(sorted({p for c in mixed for p in c}))
        text += (f" With k={k} for {len(phases)} phases some phases must share a cluster: here {merged}"
                 + (", which both lack Z order and give random-looking bits."
                    if set(p for c in mixed for p in c) == {"trivial_product", "pseudorandom"} else "."))
    elif params.get("noise", 0.0) >= 0.3:
        text += (f" The noise of {params['noise']:g} rad per layer erases the fingerprints: the ordered phase's "
                 "correlations and the cluster phase's string order decay, so their runs overlap in feature space.")
    else:
        text += " The mixed phases' feature vectors overlap at these settings, so KMeans cannot separate them."
    return make_sample("discovery_explanation", rng.choice(EXPLAIN_DISCOVERY).format(**fields), "", text, params, q)


def to_json_line(sample: dict) -> str:
    return json.dumps(sample, sort_keys=True, ensure_ascii=False)
