"""Short drills of the two arithmetic steps the lab's rules need and a small model gets wrong, worded exactly as the
lab answers word them, with numbers that come from the question (no lab values: `meta.values` stays empty).

Measured on the held-out questions of a default run (run 14): every wrong TRI verdict was the sign between two
TRIs ("Run A's 1.1 > Run B's 1.5"); every wrong drift verdict came with a wrong product or sign. Run 19's model
answered new drills of the one-step form ("0.8 × 0.140 = 0.112, and 0.052 > 0.112, yes") at chance, 25 of 40,
nearly always one sign per form: it had learned no comparison. Each comparison is now a digit walk
(samples.digit_walk), which 300 drills alone taught to 59 of 60. The drills cost ~60 tokens each and need no lab
run."""

from __future__ import annotations

import random

from benlab import samples, worked_arithmetic
from benlab.samples import ANSWER_MARK, Quotes

COMPARE_QUESTIONS = (
    "Which is larger, Run A's {a} or Run B's {b}? Answer Run A or Run B.",
    "Run A gave {a} and Run B gave {b}. Which number is larger?",
    "Compare Run A's {a} with Run B's {b}: which is larger?",
)
PRODUCT_QUESTIONS = (
    "Is the depth-{d} drift {prev} above 0.8 × the depth-{d2} drift {last}?",
    "Is {prev} above 0.8 × {last}? Work it out.",
    "Check whether {prev} > 0.8 × {last}.",
)


def compare_sample(rng: random.Random) -> dict:
    """Two numbers of a TRI's range (0 to 2) whose first decimals differ, mostly with the same whole part: the
    answer walks their digits as samples.tri_comparison does."""
    whole = rng.randrange(2)
    a = whole + rng.randrange(1000) / 1000
    while True:
        b = (whole if rng.random() < 0.7 else 1 - whole) + rng.randrange(1000) / 1000
        if f"{b:.3f}"[:3] != f"{a:.3f}"[:3]:
            break
    if (a > b) != (rng.random() < 0.5):  # the larger on either side equally often
        a, b = b, a
    ta, tb = f"{a:.3f}", f"{b:.3f}"
    walk, sign = samples.digit_walk(ta, tb)
    winner = "Run A" if sign == ">" else "Run B"
    output = f"Run A's {ta} against Run B's {tb}: {walk}, so {winner} is larger. {ANSWER_MARK} {winner}."
    question = rng.choice(COMPARE_QUESTIONS).format(a=ta, b=tb)
    return samples.make_sample("number_drill", question, "", output, {}, Quotes(), answer=winner,
                               choices=["Run A", "Run B"])


def product_sample(rng: random.Random) -> dict:
    """A second-last drift against 0.8 × the last, worded as samples.drift_rule works the saturation rule (0.8 is
    its ratio for the default depth factors, the sweeps the data and the evaluation use). A third of the pairs
    saturate clearly, a third grow clearly and a third lie within 8% of the level, where a product a few
    hundredths off flips the verdict: three of the four held-out sweeps a model trained without them got wrong
    were products 0.02-0.08 low within 15% of the level ("0.8 × 0.546 = 0.416", 0.437). With these and four drills
    per comparison run and sweep: drift_class 83.3% -> 91.7% on an H200, 95.8% in run 27 on 2 CPU cores."""
    last = rng.randrange(20, 900) / 1000
    band = rng.random()
    if band < 1 / 3:
        share = rng.uniform(0.85, 1.05)
    elif band < 2 / 3:
        share = rng.uniform(0.3, 0.74)
    else:
        share = rng.uniform(0.74, 0.86)
    last_text, prev_text = f"{last:.3f}", f"{min(last * share, 0.999):.3f}"
    product, level = samples.level_product("0.8", last_text)
    walk, sign = samples.digit_walk(prev_text, level)
    verdict = "yes" if sign == ">" else "no"
    depth = rng.choice([2, 4, 8, 16])
    question = rng.choice(PRODUCT_QUESTIONS)
    # named by its depth where the question names one, as samples.drift_rule names it
    named = f"The depth-{depth} drift {prev_text}" if "{d}" in question else prev_text
    output = f"{product}. {named} against {level}: {walk}, so {verdict}."
    question = question.format(prev=prev_text, last=last_text, d=depth, d2=2 * depth)
    return samples.make_sample("number_drill", question, "", output, {}, Quotes(), answer=verdict,
                               choices=["yes", "no"])


TRI_EXPECTATION_QUESTIONS = (
    "What is 2 × |2b − 1| at b = {b}? Work it out.",
    "Work out the symmetric TRI 2 × |2b − 1| for bias {b}.",
    "At bias {b}, what does 2 × |2b − 1| give?",
)


def tri_expectation_sample(rng: random.Random) -> dict:
    """What a spin-flip symmetric circuit gives at a bias, worked as the TRI explanations work it
    (worked_arithmetic.tri_expectation): run 30's lab sessions got 5 of its steps wrong ("2 × 0.45 = 0.8",
    "2 × 0.1 = 0.01"), each bias having been doubled in a few answers only. Biases on the lab's 0.05 grid half the
    time (57 distinct questions; the generator drops repeats), two free decimals otherwise."""
    step = rng.choice([i for i in range(1, 20) if i != 10])
    bias = round(step * 0.05 if rng.random() < 0.5 else rng.choice([i for i in range(1, 100) if i != 50]) / 100, 2)
    steps, value = worked_arithmetic.tri_expectation(bias)
    output = f"2 × |2b − 1| at b = {bias:g}: {steps}. {ANSWER_MARK} {value}."
    question = rng.choice(TRI_EXPECTATION_QUESTIONS).format(b=f"{bias:g}")
    return samples.make_sample("number_drill", question, "", output, {}, Quotes(), answer=value)


FLAT_QUESTIONS = (
    "A replay-drift sweep gave {table}. Is it Flat (every drift under 0.02)?",
    "Drifts {table}: check the Flat rule, every drift under 0.02.",
    "Is this sweep Flat? {table}",
)


def flat_check_sample(rng: random.Random) -> dict:
    """The Flat check of samples.drift_rule alone, on a sweep of four depths whose first drift is 0.000 as the lab's
    are: run 35 read "depth 16 0.140 yes" and "depth 8 0.059 yes", and on a sweep of zeros checked "depth N 0.000
    yes" past the last depth until its budget ran out (the data had 9 Flat sweeps). A quarter of the sweeps are all
    zeros, a quarter Flat with small drifts, half not Flat at a drift drawn near the threshold as often as far."""
    base = rng.choice([1, 2, 4, 8])
    depths = [base * factor for factor in (1, 2, 4, 8)]
    kind = rng.random()
    if kind < 0.25:
        drifts = [0.0] * 4
    else:
        drifts = [0.0] + sorted(rng.randrange(0, 20) / 1000 for _ in range(3))
    if kind >= 0.5:
        crossing = rng.randrange(1, 4)  # the first drift at or above 0.02
        high = rng.randrange(20, 100) if rng.random() < 0.5 else rng.randrange(100, 600)
        drifts[crossing:] = sorted(rng.randrange(high, high + 200) / 1000 for _ in drifts[crossing:])
    texts = [f"{drift:.3f}" for drift in drifts]
    flat, checks = samples.flat_check(depths, texts)
    table = ", ".join(f"depth {depth}: {text}" for depth, text in zip(depths, texts))
    output = f"Flat needs every drift under 0.02, each starting 0.00 or 0.01: {checks}"
    question = rng.choice(FLAT_QUESTIONS).format(table=table)
    verdict = "Flat" if flat else "not Flat"
    return samples.make_sample("number_drill", question, "", output, {}, Quotes(), answer=verdict,
                               choices=["Flat", "not Flat"])


def drill_samples(rng: random.Random, n: int) -> list[dict]:
    """n drills, alternating a comparison and a product, and a TRI expectation after every fourth. One comparison
    to two products measured worse in run 16 (drift_class 58.3%, against 75.0%); so did the drift compared to two
    decimals, as TRIs once were to one, in run 18 (drift_class 50.0%)."""
    drills = []
    for i in range(n):
        drills.append(compare_sample(rng) if i % 2 == 0 else product_sample(rng))
        if i % 4 == 3:
            drills.append(tri_expectation_sample(rng))
    return drills
