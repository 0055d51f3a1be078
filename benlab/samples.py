"""Turn lab results into instruction/answer samples whose answers quote the measured numbers and say what follows
from them under the lab's physics (docs/lab/). Pure functions: lab response dicts in, sample dicts out.

Every quoted number goes through a Quotes object, which records it in the sample's meta["values"], so tests can
check each quoted number against the lab's response. Question wording is picked from several families with a
seeded generator, so the model learns the lab rather than one phrasing.
"""

from __future__ import annotations

import json
import random
from itertools import count

from benlab.lab import experiments
from benlab.prompts import SYSTEM_PROMPT
from benlab.worked_arithmetic import times_digit, tri_expectation

PHASES = ("ising_symmetry_breaking", "spt_cluster", "trivial_product", "pseudorandom")
DRIFT_CLASSES = ("Grows", "Saturates", "Flat")
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
    """Formats numbers for an answer and remembers each one (name -> the value as quoted). `cut` quotes the
    leading digits of the value as the lab's JSON writes it (0.9914380088 -> 0.991) instead of rounding: reading a
    raw result, copying digits is what a small model can do reliably."""

    def __init__(self, cut: bool = False):
        self.values: dict[str, float] = {}
        self.cut = cut

    def __call__(self, name: str, value: float, digits: int = 3) -> str:
        text = f"{value:.{digits}f}"
        if self.cut:
            whole, _, frac = f"{value:.10f}".partition(".")
            text = f"{whole}.{frac[:digits]}"
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
    """The identification as the lab does it, one fingerprint at a time, each check a digit walk against
    FINGERPRINT_LEVEL ("here 0.16 against 0.50: ones 0 and 0, equal; tenths 1 and 5, 1 < 5, no."): a small model
    learns a comparison made next to the number, digit by digit (a phase name produced straight from ten numbers
    is not learned in a CPU-sized run; "here 0.16 > 0.5" was misjudged in 3 of 20 held-out runs)."""
    answer, checks = fingerprint_phase(values), []
    level = f"{FINGERPRINT_LEVEL:.2f}"
    for phase, feature in FINGERPRINTS:
        value = q(feature, values[feature], 2)
        hit = phase == answer
        walk = "below zero" if value.startswith("-") else digit_walk(value, level)[0]
        checks.append(f"{phase} needs {feature} > {FINGERPRINT_LEVEL}: here {value} against {level}: {walk}, "
                      f"{'yes' if hit else 'no'}.")
        if hit:
            return " ".join(checks) + f" {ANSWER_MARK} {phase}. {IDENTIFIED[phase].format(**quoted(values, q))}"
    return (" ".join(checks) + f" None fits, so the state is scrambled. {ANSWER_MARK} pseudorandom. "
            + IDENTIFIED["pseudorandom"].format(**quoted(values, q)))


def named_phase_reasoning(values: dict[str, float], phase: str, q: Quotes) -> str:
    """A result that names its phase: that phase's fingerprint next to its number, and no search through the
    others. Worked through like an identification, a misread comparison ("0.010 > 0.5, yes. Answer: spt_cluster")
    contradicted the phase_type the model had just copied from the result. (Worded as an identification's check,
    "X needs F > 0.5: here v > 0.5, yes", the model ran on into the phase-name list or another phase's fingerprint:
    result_phase 100% -> 50% in a default run.)"""
    if phase == "pseudorandom":
        listing = ", ".join(f"{feature} {q(feature, values[feature], 2)}" for _, feature in FINGERPRINTS)
        checks = (f"pseudorandom has no fingerprint of its own: {listing}, all below {FINGERPRINT_LEVEL}, so the "
                  "state is scrambled.")
    else:
        # the phase's name again right before its fingerprint: "its fingerprint" alone, the model wrote
        # x_magnetization (the third feature of every result) for 14 of 20 held-out runs of every phase (run 30)
        feature = dict(FINGERPRINTS)[phase]
        checks = f"{phase}'s fingerprint is {feature}: {q(feature, values[feature], 2)} > {FINGERPRINT_LEVEL}."
    return f"{checks} {ANSWER_MARK} {phase}. {IDENTIFIED[phase].format(**quoted(values, q))}"


def quoted(values: dict[str, float], q: Quotes) -> dict[str, str]:
    return {name: q(name, values[name], 2) for name in SHOWN_FEATURES}


# What the identified phase means, after the answer, with the numbers that show it.
IDENTIFIED = {
    "spt_cluster": "Hidden topological order: string_order {string_order}, entanglement_norm {entanglement_norm}.",
    "ising_symmetry_breaking": "Each shot is ordered: abs_magnetization {abs_magnetization}, magnetization {magnetization}.",
    "trivial_product": "Independent qubits along X: entanglement_norm {entanglement_norm}, magnetization {magnetization}.",
    "pseudorandom": "Scrambled: entanglement_norm {entanglement_norm}, randomness {randomness}.",
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


def noise_note(params: dict, phase: str) -> str:
    if phase == "pseudorandom":
        return ""
    if params.get("noise", 0.0) == 0.0:
        return " With noise 0 the state is exactly the ideal state."
    return f" {params['depth']} layers of coherent errors (noise {params['noise']:g} rad) keep the order just below its ideal value."


IDENTIFY_PHASE = (
    "Which phase produced these measurements?",
    "Identify the phase of this lab run.",
    "Which of the four phases is this unlabelled run?",
)
def feature_table(v: dict[str, float], params: dict, q: Quotes) -> str:
    """The measurements to 2 decimals: enough to tell the phases apart, and short."""
    shown = ", ".join(f"{name}={q(name, v[name], 2)}" for name in SHOWN_FEATURES)
    return f"N={params['system_size']}, depth={params['depth']}: {shown}"


def phase_identification(response: dict, rng: random.Random, kind: str = "phase_identification") -> dict:
    params, v, q = response["params"], measurements(response), Quotes()
    table = feature_table(v, params, q)
    output = fingerprint_reasoning(v, Quotes())
    return make_sample(kind, rng.choice(IDENTIFY_PHASE), table, output, params, q,
                       experiment_id=response["experiment_id"], answer=response["phase_type"], choices=list(PHASES))


# ---------------------------------------------------------------- TRI


def tri_reason(phase: str, bias: float, tri: float) -> str:
    steps, expected = tri_expectation(bias)
    formula = f"2 × |2b − 1| at b = {bias:g}: {steps}"
    if phase in STRUCTURED and abs(tri - float(expected)) <= 0.15:
        return f"the circuit keeps the spin-flip symmetry, so TRI is close to {formula}; the state remembers its tilt"
    if phase in STRUCTURED:
        return f"a symmetric circuit would give {formula}; noise and the finite shots make up the difference"
    return "the random circuit scrambles the initial tilt away, so the two runs differ only by fluctuations"


def tri_text(response: dict, q: Quotes) -> str:
    """A /tri result explained in a fixed order: TRI, what the symmetry predicts and what it means, the echo."""
    params = response["params"]
    phase, bias = params.get("phase_type", "ising_symmetry_breaking"), params.get("bias", 0.7)  # the lab's defaults
    text = f"TRI = {q('TRI', response['TRI'])} for {phase} at bias {bias:g}"
    if response.get("feature_names"):
        # No "high"/"low" verdict: unworked, the model called a TRI of 0.061 "high" (run 20's lab sessions).
        text += f": {tri_reason(phase, bias, response['TRI'])}."
    else:
        text += ", the L2 distance between the feature vectors at bias b and 1 − b."
    if "loschmidt_echo" in response:
        if phase == "ising_symmetry_breaking":
            why = "the cat state's two branches feel the kicks N times harder, so it is the most fragile"
        elif phase == "pseudorandom":
            why = "the random gates scramble the kicks, so they add up incoherently and barely matter"
        else:
            why = "the kicks add up coherently qubit by qubit, a slow decay"
        text += (f" loschmidt_echo = {q('loschmidt_echo', response['loschmidt_echo'])}, the chance of coming back "
                 f"after a slightly perturbed reverse run: {why}.")
    return text


COMPARE_TRI = (
    "Which of these two runs has the larger TRI? Explain, then answer Run A or Run B.",
    "Two TRI tests were run in the Jarvis lab. Which one shows the larger time-reversal instability, Run A or Run B?",
    "Compare the time-reversal instability of these runs: is it larger for Run A or Run B?",
)


PLACES = ("ones", "tenths", "hundredths", "thousandths")
WHOLE_PLACES = ("hundreds", "tens", "ones")


def digit_walk(x: str, y: str) -> tuple[str, str]:
    """Two non-negative numbers under 1000, as quoted, compared place by place until their digits differ: ("ones 0
    and 0, equal; tenths 3 and 2, 3 > 2", ">"); whole numbers of different lengths are compared with leading zeros
    ("tens 0 and 2, 0 < 2" for 9 against 20). A small model copies two digits and compares them reliably, while
    it judged "0.030 > 0.192" and "Run A's 0.4 < Run B's 0.2" near chance: trained on 300 drills alone, this walk
    answered 59 of 60 new drills right, the one-step comparison 35 of 60."""
    (xw, _, xf), (yw, _, yf) = x.partition("."), y.partition(".")
    whole = min(max(len(xw), len(yw)), len(WHOLE_PLACES))
    width = min(max(len(xf), len(yf)), len(PLACES) - 1)
    places = WHOLE_PLACES[-whole:] + PLACES[1:]
    steps = []
    for place, a, b in zip(places, xw.zfill(whole) + xf.ljust(width, "0"), yw.zfill(whole) + yf.ljust(width, "0")):
        if a != b:
            sign = ">" if a > b else "<"
            return "; ".join(steps + [f"{place} {a} and {b}, {a} {sign} {b}"]), sign
        steps.append(f"{place} {a} and {b}, equal")
    return "; ".join(steps), "="


def tri_comparison(a: dict, b: dict, rng: random.Random, kind: str = "tri_comparison") -> dict:
    """Two measured TRIs in the question; the answer compares them digit by digit (the pairs differ by >= 0.15,
    so the walk ends by the tenths) and says why the physics orders them so."""
    q = Quotes()
    pa, pb = a["params"], b["params"]
    ta, tb = q("TRI_A", a["TRI"]), q("TRI_B", b["TRI"])
    input_text = f"Run A: {run_label(pa)}, TRI {ta}. Run B: {run_label(pb)}, TRI {tb}."
    winner, loser, wp, lp = ("Run A", "Run B", pa, pb) if a["TRI"] > b["TRI"] else ("Run B", "Run A", pb, pa)
    if wp["phase_type"] in STRUCTURED and lp["phase_type"] == "pseudorandom":
        why = (f"{winner}'s {wp['phase_type']} circuit keeps the spin-flip symmetry, while {loser}'s pseudorandom "
               "circuit scrambles the initial tilt away")
    elif wp["phase_type"] in STRUCTURED and lp["phase_type"] in STRUCTURED:
        why = (f"both circuits keep the spin-flip symmetry, so TRI follows 2|2b-1|, and {winner}'s bias "
               f"{wp['bias']:g} is further from 0.5 than {loser}'s {lp['bias']:g}")
    else:
        why = (f"{loser}'s bias {lp['bias']:g} is so close to 0.5 that mirroring it hardly changes anything, "
               "while the scrambled pseudorandom run still differs by random-state fluctuations")
    # The larger run is named right after the walk ("..., 3 > 2, so Run A"), so the verdict copies the name the
    # last digit comparison points at.
    walk, _ = digit_walk(ta, tb)
    output = (f"Run A's {ta} against Run B's {tb}: {walk}, so {winner} is larger. Why: {why}. "
              f"{ANSWER_MARK} {winner}.")
    params = {"run_a": pa, "run_b": pb}
    return make_sample(kind, rng.choice(COMPARE_TRI), input_text, output, params, q,
                       experiment_id=[a["forward_id"], b["forward_id"]], answer=winner, choices=["Run A", "Run B"])


def comparable(a: dict, b: dict) -> bool:
    """A pair whose TRI ordering is a physical fact, not a coin flip between two fluctuations."""
    both_random = a["params"]["phase_type"] == b["params"]["phase_type"] == "pseudorandom"
    return not both_random and abs(a["TRI"] - b["TRI"]) >= 0.15


# ---------------------------------------------------------------- replay drift


CLASSIFY_DRIFT = (
    "Does the drift grow, saturate or stay flat? Explain, then answer Grows, Saturates or Flat.",
    "Classify this replay-drift sweep as Grows, Saturates or Flat.",
    "Looking at these drifts, does the lab's replay drift grow, saturate, or stay flat?",
)


def drift_class(response: dict) -> str:
    runs = response["runs"]
    trend = response.get("drift_trend") or experiments.drift_trend([r["depth"] for r in runs], [r["drift"] for r in runs])
    return trend.capitalize()


def drift_table(response: dict, q: Quotes) -> str:
    cells = []
    for run in response["runs"]:
        depth = run["depth"]
        cells.append(f"depth {depth}: {q(f'drift_{depth}', run['drift'])}")
    return ", ".join(cells)


def flat_check(depths: list[int], drift_texts: list[str]) -> tuple[bool, str]:
    """Whether every quoted drift is under 0.02, checked one drift at a time by its leading digits (under 0.02 is
    "starts 0.00 or 0.01"), stopping at the first that is not: a small model reads two digits reliably, while it
    misjudges "the largest of four numbers" and "0.696 < 0.02". The leading digits are written out before the verdict
    ("depth 32 0.024 starts 0.02 no"): run 41, judging from the whole number, said "depth 32 0.024 yes" and
    "depth 8 0.057 yes" in 2 of its 3 drift_class misses."""
    checks = []
    for depth, text in zip(depths, drift_texts):
        under = float(text) < experiments.FLAT_DRIFT
        checks.append(f"depth {depth} {text} starts {text[:4]} {'yes' if under else 'no'}")
        if not under:
            return False, ", ".join(checks) + ", so not Flat."
    return True, ", ".join(checks) + ", so Flat."


def drift_rule(response: dict, drift_texts: list[str]) -> str:
    """The lab's drift_trend rule worked through on the quoted drifts: flat when every drift is under 0.02;
    saturates when the last step's drift per layer is under 0.35 x the sweep's average, which for depths
    d1 < ... < dk is: second-last drift > (1 - 0.35 (dk - dk-1) / (dk - d1)) x last drift."""
    depths = [r["depth"] for r in response["runs"]]
    flat, checks = flat_check(depths, drift_texts)
    text = f"Flat needs every drift under 0.02, each starting 0.00 or 0.01: {checks}"
    if flat or len(depths) < 3:
        return f"{text} {ANSWER_MARK} {'Flat' if flat else 'Grows'}."
    span, step = depths[-1] - depths[0], depths[-1] - depths[-2]
    ratio = 1 - experiments.SATURATION_RATIO * step / span  # 0.8 for the default factors 1, 2, 4, 8
    ratio_text = f"{ratio:.2f}".rstrip("0")
    # The default factors' 0.8 is a rule constant; any other ratio is derived in the text.
    formula = "" if ratio_text == "0.8" else f" (1 − 0.35 × {step}/{span} = {ratio_text})"
    last, previous = drift_texts[-1], drift_texts[-2]
    product, level = level_product(ratio_text, last)
    # The level keeps a fourth decimal: the walk stops at the thousandths, and "equal" there means not above it.
    walk, sign = digit_walk(previous, level)
    saturates = sign == ">"
    cls = "Saturates" if saturates else "Grows"
    # the class named right after the check, as "so Flat." is: with "so no. Answer:" alone, run 34 reasoned right
    # and then scored the other class in 10 of its 11 misses (drift_class 87.5% -> 54.2%)
    # "Next," so the token after "so not Flat." is not the " S" that "SPT" shares: run 36 went on from " S" to
    # "PT_cluster's fingerprint" in 2 of 22 held-out sweeps (llama.cpp next-token log-probs)
    # Each drift is named by its depth where it is used: after "= 0.4040." with no name, run 46 compared the last
    # drift (the number the product had just used) instead of the second-last in 3 of its 7 drift_class misses, and
    # wrote a subtraction there in 2 more.
    second_last = f"depth-{depths[-2]} drift {previous}"
    text += (f" Next, Saturates needs the {second_last} above {ratio_text} × the depth-{depths[-1]} drift {last}"
             f"{formula}: {product}. The {second_last} against {level}: {walk}, "
             f"so {'yes' if saturates else 'no'}, so {cls}.")
    return f"{text} {ANSWER_MARK} {cls}."


def level_product(ratio_text: str, drift_text: str) -> tuple[str, str]:
    """(the working, the level) of the saturation level: a one-digit ratio (0.8, the default factors') digit by
    digit, ending "so 0.8 × 0.546 = 0.4368"; any other ratio in one step."""
    if len(ratio_text) == 3 and ratio_text.startswith("0."):
        steps, level = times_digit(int(ratio_text[2]), drift_text)
        return f"{steps}, so {ratio_text} × {drift_text} = {level}", level
    level = f"{float(ratio_text) * float(drift_text):.4f}"
    return f"{ratio_text} × {drift_text} = {level}", level


def drift_meaning(response: dict, cls: str) -> str:
    phase = response["phase_type"]
    noise = (response.get("params") or {}).get("noise")
    if cls == "Flat":
        if phase in STRUCTURED and noise == 0.0:
            return "With noise 0 the extra layers are idle, so the state and every feature stay exactly the same."
        return "Depth changes nothing measurable here."
    if cls == "Saturates":
        if phase == "pseudorandom":
            return ("Once the brickwork has scrambled the chain, every deeper state is just another random state, so "
                    "the drift levels off at the size of random-state fluctuations.")
        return ("The coherent errors perform a random walk, and in this sweep the last step happened to add little: "
                "for structured phases this is chance, the typical trend is growth.")
    if phase == "pseudorandom":
        return "The circuit is still scrambling: entanglement keeps rising towards the Page value as layers are added."
    return ("Coherent errors accumulate like a random walk, so the order parameters keep decaying, roughly in "
            "proportion to the depth.")


def drift_result_text(response: dict, q: Quotes) -> str:
    """A /replay_drift result explained: drift_trend, the drift of the deepest run (the result's last), and why.
    One drift, not a list: listing every depth, the model lost count and listed depths the result does not have;
    listing the two deepest value first ("the drift is 0.415 at depth 16 and ..."), it put 16 of 24 at the wrong
    depth (run 18); depth first ("the drift at depth 16 is ... and at depth 32 is ..."), it looped on the list
    (run 20: quoted_values 80.1%). The trend is quoted as the JSON writes it, '"drift_trend": "grows"', so the
    model copies the value that follows the key in the result; after "drift_trend is" run 24's model wrote a phase
    ("drift_trend is spt_cluster: the cluster state, ...", the phase-name answers' form) in 8 of 24."""
    cls = drift_class(response)
    text = f'"drift_trend": "{response.get("drift_trend", cls.lower())}" for {response["phase_type"]}'
    if response["runs"]:
        last = response["runs"][-1]
        drift = q(f"drift_{last['depth']}", last["drift"])
        text += f": at depth {last['depth']}, the deepest run, the drift is {drift}"
    return f"{text}. {drift_meaning(response, cls)}"


def drift_classification(response: dict, params: dict, rng: random.Random, kind: str = "drift_class",
                         wordings: tuple[str, ...] = CLASSIFY_DRIFT) -> dict:
    q = Quotes()
    input_text = (f"Replay drift of {response['phase_type']} at N={params['system_size']}, noise "
                  f"{params.get('noise', 0.05):g}, seed {params['seed']}: {drift_table(response, q)}.")
    texts = [f"{run['drift']:.3f}" for run in response["runs"]]
    output = drift_rule(response, texts)
    cls = drift_class(response)
    if not output.endswith(f"{ANSWER_MARK} {cls}."):
        return {}  # the quoted (rounded) drifts fall on the other side of the rule than the exact ones: ambiguous
    output += " " + drift_meaning(response, cls)
    return make_sample(kind, rng.choice(wordings), input_text, output, params, q,
                       experiment_id=[r["id"] for r in response["runs"]], answer=cls, choices=list(DRIFT_CLASSES))


# ---------------------------------------------------------------- discovery


def discovery_clusters(response: dict) -> list[tuple[int, dict]]:
    """Each cluster of a /discovery result: its number and its runs by phase. The lab's own numbers where it gives
    them (a numbering of our own contradicted the JSON's "cluster"), else the position in the original lab's list."""
    ids = [c["cluster"] for c in response["clusters"]] if "clusters" in response else count()
    return list(zip(ids, response["cluster_label_stats"]))


def discovery_text(response: dict, request: dict, q: Quotes) -> str:
    """A /discovery result explained: each cluster's phases, purity and ARI quoted, and why clusters mix.
    `request` is the body sent: the original lab does not echo its parameters back."""
    params = {"noise": 0.05, **request, **(response.get("params") or {})}
    phases = response.get("phases") or request.get("phases") or list(PHASES)
    k = response["num_clusters"]
    parts = []
    for i, counts in discovery_clusters(response):
        listing = " and ".join(f"{c} {p}" for p, c in counts.items()) or "no runs"
        parts.append(f"cluster {i} holds {listing}" + (" (clean)" if len(counts) == 1 else " (mixed)"))
    mixed = [c for c in response["cluster_label_stats"] if len(c) > 1]
    text = f"k-means with k={k} on {response['num_samples']} runs: " + "; ".join(parts) + "."
    if "adjusted_rand_index" not in response:  # the original lab: report its counts, claim no physics
        return text
    text += (f" purity = {q('purity', response['purity'])} and adjusted_rand_index = "
             f"{q('adjusted_rand_index', response['adjusted_rand_index'])}.")
    if not mixed:  # what the scores mean, naming no phase: after a sentence on all four phases' features, run 62
        # explained a two-phase result with a third cluster, and run 66, given the run's phases' features only, wrote
        # features of its own ("trivial_product's x_magnetization 0.5")
        text += (" Each cluster holds runs of one phase only (purity: the share of runs in their cluster's majority "
                 "phase)" + (" and each phase has a cluster of its own (adjusted_rand_index: how well the clusters "
                             "match the phases)." if k == len(phases) else
                             ", but a phase is split over several clusters, which adjusted_rand_index (how well the "
                             "clusters match the phases) counts against."))
    elif k < len(phases):
        merged = " and ".join(sorted({p for c in mixed for p in c}))
        text += f" With k={k} for {len(phases)} phases some phases must share a cluster: here {merged}."
    elif params.get("noise", 0.0) >= 0.3:
        text += (f" The noise of {params['noise']:g} rad per layer erases the fingerprints: the ordered phase's "
                 "correlations and the cluster phase's string order decay, so their runs overlap in feature space.")
    else:
        text += " The mixed phases' feature vectors overlap at these settings, so k-means cannot separate them."
    return text


def to_json_line(sample: dict) -> str:
    return json.dumps(sample, sort_keys=True, ensure_ascii=False)
