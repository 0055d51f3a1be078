"""Short drills of the two arithmetic steps the lab's rules need and a small model gets wrong, worded exactly as the
lab answers word them, with numbers that come from the question (no lab values: `meta.values` stays empty).

Measured on the held-out questions of a default run (run 14): every wrong TRI verdict (5 of 21 comparisons, 8 of
21 raw-result comparisons) was the sign between two TRIs with the same whole part ("Run A's 1.1 > Run B's 1.5"),
while pairs with different whole parts were all right; every wrong drift verdict (6 of 24) came with a wrong
product ("0.8 × 0.120 = 0.000", "0.8 × 0.402 = 0.308"). The ~80 comparisons and ~50 sweeps of the lab data hold
too few same-whole-part pairs and products for a 135M model to learn either step; these drills cost ~40 tokens
each and need no lab run.
"""

from __future__ import annotations

import random

from benlab import samples
from benlab.samples import ANSWER_MARK, Quotes

COMPARE_QUESTIONS = (
    "Which is larger, Run A's {a} or Run B's {b}? Answer Run A or Run B.",
    "Run A gave {a} and Run B gave {b}. Which number is larger?",
    "Compare Run A's {a} with Run B's {b}: which is larger?",
)
PRODUCT_QUESTIONS = (
    "Is the depth-16 drift {prev} above 0.8 × the depth-32 drift {last}?",
    "Is {prev} above 0.8 × {last}? Work it out.",
    "Check whether {prev} > 0.8 × {last}.",
)


def compare_sample(rng: random.Random) -> dict:
    """Two numbers of a TRI's range (0 to 2) whose first decimals differ, mostly with the same whole part: the
    answer compares them to one decimal as samples.tri_comparison does."""
    whole = rng.randrange(2)
    a = whole + rng.randrange(1000) / 1000
    while True:
        b = (whole if rng.random() < 0.7 else 1 - whole) + rng.randrange(1000) / 1000
        if samples.one_decimal(f"{b:.3f}") != samples.one_decimal(f"{a:.3f}"):
            break
    if (a > b) != (rng.random() < 0.5):  # the larger on either side equally often
        a, b = b, a
    ta, tb = f"{a:.3f}", f"{b:.3f}"
    da, db = samples.one_decimal(ta), samples.one_decimal(tb)
    winner = "Run A" if float(da) > float(db) else "Run B"
    sign = ">" if winner == "Run A" else "<"
    output = f"To one decimal Run A's {da} {sign} Run B's {db}, so {winner} is larger. {ANSWER_MARK} {winner}."
    question = rng.choice(COMPARE_QUESTIONS).format(a=ta, b=tb)
    return samples.make_sample("number_drill", question, "", output, {}, Quotes(), answer=winner,
                               choices=["Run A", "Run B"])


def product_sample(rng: random.Random) -> dict:
    """A second-last drift against 0.8 × the last, worded as samples.drift_rule works the saturation rule (0.8 is
    its ratio for the default depth factors, the sweeps the data and the evaluation use); half of the pairs
    saturate."""
    last = rng.randrange(20, 900) / 1000
    share = rng.uniform(0.85, 1.05) if rng.random() < 0.5 else rng.uniform(0.3, 0.75)
    last_text, prev_text = f"{last:.3f}", f"{min(last * share, 0.999):.3f}"
    level = f"{0.8 * float(last_text):.3f}"
    above = float(prev_text) > float(level)
    output = (f"0.8 × {last_text} = {level}, and {prev_text} {'>' if above else '<'} {level}, "
              f"{'yes' if above else 'no'}.")
    question = rng.choice(PRODUCT_QUESTIONS).format(prev=prev_text, last=last_text)
    return samples.make_sample("number_drill", question, "", output, {}, Quotes(), answer="yes" if above else "no",
                               choices=["yes", "no"])


def drill_samples(rng: random.Random, n: int) -> list[dict]:
    """n drills, alternating a comparison and a product. One comparison to two products (4 per run instead of 3, a
    third of the products near the 0.8 threshold) measured worse in run 16: drift_class 58.3% (75.0% with these),
    tri_comparison 90.5% (100%), result_tri_compare 76.2% (100%). Comparing the drift with the product cut to two
    decimals, as TRIs are cut to one ("0.8 × 0.136 = 0.109; to two decimals 0.12 > 0.10, yes", in the sweeps and
    these drills) measured no better, run 18: drift_class 50.0% on 2 CPU cores and on a GPU, the signs near random
    ("0.26 > 0.62", "0.12 < 0.10"); run 19, this form with the same other data, also 50.0%."""
    return [compare_sample(rng) if i % 2 == 0 else product_sample(rng) for i in range(n)]
