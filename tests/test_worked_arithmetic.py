"""The worked products the answers write: every step right, the steps really give the product, and the evaluation
counts a derivation right only when its number is the value and its operands come from the conversation."""

import random
from decimal import Decimal

from benlab import grounding, skills
from benlab.worked_arithmetic import times_digit, tri_expectation


def test_each_step_is_right_and_the_steps_spell_the_product():
    rng = random.Random(0)
    for number in ["0.000", "0.005", "0.046", "0.546", "0.999", "1.234"] + [f"{rng.randrange(1000) / 1000:.3f}"
                                                                            for _ in range(300)]:
        steps, product = times_digit(8, number)
        assert Decimal(product) == Decimal("0.8") * Decimal(number) and len(product.split(".")[1]) == 4
        digits = number.replace(".", "")
        written, carry = "", 0
        for place, step in enumerate(steps.split("; "), start=1):  # one step per digit, right to left
            working, shown = step.split(": ")
            expressions = working.split(", ")
            first, value = expressions[0].split(" = ")
            assert first == f"8 × {digits[-place]}" and int(value) == 8 * int(digits[-place]), step
            if carry:  # the carry of the step before, one digit, added in a step of its own
                assert expressions[1] == f"{value} + {carry} = {int(value) + carry}", step
                value = str(int(value) + carry)
            else:
                assert len(expressions) == 1, step
            # one digit put in front of the digits so far; the last step puts its whole value there
            assert shown == (value if place == len(digits) else value[-1]) + written, step
            written, carry = shown, int(value) // 10
        assert place == len(digits) and int(written) == int(product.replace(".", "")), (number, steps, product)
        n_steps = steps.count(" = ")
        assert len(grounding.derived(f"{steps}, so 0.8 × {number} = {product}", [float(number), 0.8], exact=True)) \
            == n_steps + 1


def test_the_tri_expectation_is_two_times_the_distance_of_twice_the_bias_from_one():
    for hundredths in range(0, 101, 5):
        bias = hundredths / 100
        steps, value = tri_expectation(bias)
        assert Decimal(value) == 2 * abs(2 * Decimal(str(bias)) - 1), (bias, steps)
        assert steps.endswith(f"= {value}") and len(grounding.derived(steps, [bias], exact=True)) == 3, steps


def test_a_derivation_counts_when_its_number_is_the_value_from_the_conversation():
    context = "Replay drift: depth 16: 0.436, depth 32: 0.546. bias 0.8"
    right = ("8 × 6 = 48, 8 × 4 = 32, 32 + 4 = 36, 8 × 5 = 40, 40 + 3 = 43, so 0.8 × 0.546 = 0.4368. "
             "2 × 0.8 = 1.6, 1.6 − 1 = 0.6")
    assert skills.derivations_right(right, context) == (8, 8)
    # run 29's carry steps: a product of two digits plus the carry, wrong
    assert skills.derivations_right("8 × 3 + 6 = 28, 8 × 9 + 2 = 78", context) == (0, 2)
    # run 28's products and TRI expectation, one step each and wrong
    assert skills.derivations_right("0.8 × 0.546 = 0.420", context) == (0, 1)
    assert skills.derivations_right("TRI is close to 2 × |2 × 0.8 − 1| = 0.60", context) == (0, 1)
    # right arithmetic on a number the conversation does not have (the bias copied wrong), and a value one
    # hundredth off, which a quoted value's tolerance would let pass
    assert skills.derivations_right("2 × |2 × 0.7 − 1| = 0.80", context) == (0, 1)
    assert skills.derivations_right("0.8 × 0.546 = 0.45", context) == (0, 1)
    # rounded or cut to the decimals written are both the value
    assert skills.derivations_right("0.8 × 0.546 = 0.437 or 0.8 × 0.546 = 0.436", context) == (2, 2)
    # a step built on a wrong step is not right either
    assert skills.derivations_right("2 × 0.8 = 1.5, 1.5 − 1 = 0.5", context) == (0, 2)


def test_the_digits_a_product_writes_so_far_are_checked():
    """Each step's digits so far are grounded only when they are the step's ones digit (the last step: its value)
    in front of the digits before; a product read back wrong is not ("1124" for 8 × 128)."""
    steps, product = times_digit(8, "0.128")
    text = f"{steps}, so 0.8 × 0.128 = {product}."
    assert grounding.unsupported(text, "0.128") == []
    assert grounding.unsupported(text.replace(": 1024", ": 1124"), "0.128") == ["1124"]
    assert grounding.unsupported(text.replace("22: 24;", "22: 34;"), "0.128") == ["34", "024"]
