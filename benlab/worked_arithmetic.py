"""The two products the lab's answers derive, written out in steps a small model can take one at a time.

Run 28's model wrote every derived number in one step, and none was right: 0 of 23 saturation products ("0.8 ×
0.248 = 0.182", it is 0.1984) and 0 of 7 TRI expectations in its lab sessions ("2 × |2 × 0.8 − 1| = 0.60", it is
1.20). Worked in steps, run 29 got 75 of 113 steps right; its wrong steps were a product of two digits plus a
carry ("8 × 3 + 6 = 28"), so the carry is now added in a step of its own. A derived number is presented as true,
so a wrong one breaks the rule that what ben-lab says is true. Each step here is one fact a small model can copy or
look up: a product of two digits, a one-digit carry added, doubling a number with two decimals, a distance from 1.
Every step is an `EXPRESSION = NUMBER` that `benlab.grounding` checks, each using only the question's numbers,
small integers and earlier steps; the product's digits so far, written after each of its steps, are checked too.
"""

from __future__ import annotations

from decimal import Decimal


def plain(value: Decimal) -> str:
    """A decimal as written in prose: no exponent, no trailing zeros ("1.2", "0", "0.4368")."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def times_digit(digit: int, number: str) -> tuple[str, str]:
    """(steps, product) for `0.<digit> × number` (number non-negative, as quoted: "0.128"), digit by digit from the
    right as on paper, the whole part's digits too, a carry added in a step of its own, and after each step the
    product's digits so far: ("8 × 8 = 64: 4; 8 × 2 = 16, 16 + 6 = 22: 24; 8 × 1 = 8, 8 + 2 = 10: 024; 8 × 0 = 0,
    0 + 1 = 1: 1024", "0.1024"). Each step puts one digit in front of the digits before it, so the product is the
    last step's digits with the point put in: run 47's steps were right and its products were not ("so 0.8 × 0.128
    = 0.0124"), 11 of 22, when the product had to be read back from the steps' last digits, right to left. The
    product keeps every decimal (one more than the number has), so it is exact and compares with the number's own
    digits."""
    whole, _, fraction = number.partition(".")
    digits = whole + fraction
    steps, written, carry = [], "", 0
    for place, d in enumerate(reversed(digits), start=1):
        product = digit * int(d)
        step = f"{digit} × {d} = {product}"
        if carry:  # the carry added in a step of its own: run 29 got 18 of 46 one-step "8 × 3 + 6 = 28" wrong
            step += f", {product} + {carry} = {product + carry}"
        value = product + carry
        written = (str(value) if place == len(digits) else str(value % 10)) + written
        carry = value // 10
        steps.append(f"{step}: {written}")
    product = Decimal(digit) / 10 * Decimal(number)
    return "; ".join(steps), f"{product:.{len(fraction) + 1}f}"


def tri_expectation(bias: float) -> tuple[str, str]:
    """(steps, value) of what a spin-flip symmetric circuit gives, 2 × |2b − 1|, in three steps: double the bias,
    its distance from 1, double that ("2 × 0.8 = 1.6, 1.6 − 1 = 0.6, 2 × 0.6 = 1.2")."""
    b = Decimal(str(bias))
    doubled = 2 * b
    distance = abs(doubled - 1)
    gap = f"{plain(doubled)} − 1" if doubled >= 1 else f"1 − {plain(doubled)}"
    steps = f"2 × {plain(b)} = {plain(doubled)}, {gap} = {plain(distance)}, 2 × {plain(distance)} = {plain(2 * distance)}"
    return steps, plain(2 * distance)
