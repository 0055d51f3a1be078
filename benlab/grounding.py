"""The grounding rule: a number an assistant turn presents as measured must come from the conversation.

Used three ways: the data tests check every training sample with `ungrounded`; the evaluation counts invented
measurements (`presented_as_measured`) and checks quoted values against a lab result (`quoted_numbers`).

A number in an assistant turn is grounded when it is
- one of the numbers earlier in the conversation (the question, a lab result), at the precision it is quoted
  (within one unit of its last digit, so rounding and cutting both pass);
- or derived, written as `EXPRESSION = NUMBER` where the expression uses grounded numbers, small integers, ln and
  the results of earlier derivations, and evaluates to the number ("2 × 0.7 = 1.4, 1.4 − 1 = 0.4", "ln 2 = 0.693",
  "12/2 × ln 2 − 1/2 = 3.66");
- or a worked product's digits so far ("8 × 2 = 16, 16 + 6 = 22: 24"), each the step's ones digit in front of the
  digits the step before wrote (`written_digits`);
- or one of the lab's rule constants (RULE_CONSTANTS), which are thresholds of its definitions, not measurements;
- or found in the reference text a sample cites (a page of docs/lab/), for answers that say where they come from.
"""

from __future__ import annotations

import ast
import math
import operator
import re

# Thresholds from the lab's definitions (docs/lab/): the fingerprint level of phase identification, the flat-drift
# level, and the saturation rule's ratio of last to second-last drift for depth factors 1, 2, 4, 8.
RULE_CONSTANTS = (0.5, 0.02, 0.8)
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.]*\w)")
# An arithmetic expression in prose: digits, operators, |...|, parentheses and ln, ending in "= NUMBER". It starts
# with a digit, a sign, "(", "|" or ln, so a sentence's full stop before it is not read as part of it.
DERIVATION = re.compile(r"((?:ln|[\d(|\-−])(?:ln|[\d.\s+\-−×*/|()·])*?)\s*=\s*(-?\d+(?:\.\d+)?)")
EXPECTATION = re.compile(r"expect|in theory|theory's|ideal", re.IGNORECASE)


def numbers(text: str) -> list[str]:
    """Every number written in the text, as written (JSON keys such as "drift_4" hold no number)."""
    return NUMBER.findall(text)


def decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text and "e" not in text.lower() else 0


def matches(quoted: str, value: float) -> bool:
    """Whether `value` is `quoted` at the precision it is quoted: within one unit of its last digit."""
    try:
        q = float(quoted)
    except ValueError:
        return False
    if not math.isfinite(value):
        return False
    return abs(q - value) <= 10 ** -decimals(quoted) + 1e-12


def evaluate(expression: str) -> float | None:
    """The value of a prose arithmetic expression, or None when it is not one."""
    text = expression.strip().replace("×", "*").replace("·", "*").replace("−", "-")
    text = re.sub(r"ln\s*\(?\s*(\d+(?:\.\d+)?)\s*\)?", r"_ln(\1)", text)
    parts = text.split("|")
    if len(parts) % 2 == 0:
        return None
    text = "".join(p + ("abs(" if i % 2 == 0 else ")") for i, p in enumerate(parts[:-1])) + parts[-1]
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def value(node):
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
            function = {"abs": abs, "_ln": math.log}.get(node.func.id)
            if function:
                return function(value(node.args[0]))
        raise ValueError("not arithmetic")

    try:
        return value(tree)
    except (ValueError, ZeroDivisionError):
        return None


def derivations(text: str) -> list[re.Match]:
    """Every `EXPRESSION = NUMBER` in the text whose expression computes something (digits and an operator)."""
    return [m for m in DERIVATION.finditer(text)
            if re.search(r"\d", m.group(1)) and re.search(r"[+\-−×*/|]|ln", m.group(1))]


def false_arithmetic(text: str) -> bool:
    """Whether one of the text's derivations does not hold ("7 + 8 = 15, since 7 + 7 = 15")."""
    return any((value := evaluate(m.group(1))) is not None and not written_exactly(m.group(2), value)
               for m in derivations(text))


def derived(text: str, allowed: list[float], exact: bool = False) -> set[int]:
    """Start offsets in `text` of numbers that are the result of a checked derivation: its operands are small
    integers, `allowed` numbers or results of earlier checked derivations (worked steps: "2 × 0.8 = 1.6, 1.6 − 1 =
    0.6"), and it evaluates to the number. `exact`: the number is the value rounded or cut to the decimals written
    (otherwise within one unit of its last digit, as a quoted value); so are its operands."""
    found, known = set(), list(allowed)
    same = written_exactly if exact else matches
    for match in derivations(text):
        expression, result = match.group(1), match.group(2)
        operands = NUMBER.findall(re.sub(r"ln\s*\(?\s*\d+", "", expression))
        if not all(float(n).is_integer() and abs(float(n)) <= 10
                   or any(abs(float(n) - a) < 1e-9 or same(n, a) for a in known) for n in operands):
            continue
        got = evaluate(expression)
        if got is not None and same(result, got):
            found.add(match.start(2))
            known.append(float(result))
    return found


# A worked product (worked_arithmetic.times_digit): steps "8 × 2 = 16, 16 + 6 = 22: 24" joined by "; ", each
# ending in the product's digits so far.
PRODUCT_STEP = r"\d+ × \d+ = \d+(?:, \d+ \+ \d+ = \d+)?: \d+"
WORKED_PRODUCT = re.compile(rf"{PRODUCT_STEP}(?:; {PRODUCT_STEP})*")


def written_digits(text: str) -> set[int]:
    """Start offsets of the digits so far that a worked product writes right after each step: the step's ones digit
    (the last step: its whole value) put in front of the digits the step before wrote. The steps themselves are
    derivations, checked as such."""
    found = set()
    for product in WORKED_PRODUCT.finditer(text):
        before = ""
        for step in re.finditer(r"(\d+): (\d+)", product.group()):
            value, written = step.groups()
            if written in (value[-1] + before, value + before):
                found.add(product.start() + step.start(2))
            before = written
    return found


def written_exactly(quoted: str, value: float) -> bool:
    """Whether `quoted` is `value` rounded or cut to the decimals it shows ("0.437" or "0.436" for 0.4368)."""
    places = decimals(quoted)
    cut = math.floor(abs(value) * 10 ** places + 1e-9) / 10 ** places
    return any(abs(abs(float(quoted)) - v) < 10 ** -places / 1000 for v in (round(abs(value), places), cut)) \
        and (float(quoted) < 0) == (value < -1e-12)


def unsupported(text: str, context: str) -> list[str]:
    """Numbers in `text` that are neither in `context` (at the quoted precision), nor derived, nor rule
    constants."""
    allowed = [float(n) for n in numbers(context)] + list(RULE_CONSTANTS)
    derivations = derived(text, allowed)
    # A derived number may be used again later in the text; the operands of a derivation are checked with it.
    allowed += [float(m.group(2)) for m in DERIVATION.finditer(text) if m.start(2) in derivations]
    inside = {i for m in DERIVATION.finditer(text) if m.start(2) in derivations for i in range(*m.span(1))}
    digits = written_digits(text)
    bad = []
    for match in NUMBER.finditer(text):
        quoted = match.group()
        if match.start() in derivations or match.start() in inside or match.start() in digits or small_integer(quoted):
            continue
        if not any(matches(quoted, value) for value in allowed):
            bad.append(quoted)
    return bad


def small_integer(text: str) -> bool:
    """Counts and formula constants (2 in 2|2b-1|, 3 phases), never a measurement of this lab."""
    return text.lstrip("-").isdigit() and abs(int(text)) <= 10


def ungrounded(messages: list[dict], reference: str = "") -> list[tuple[int, str]]:
    """(turn index, number) for every number of an assistant turn that does not come from an earlier turn, a
    derivation, a rule constant or the cited reference text."""
    bad = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        context = reference + "\n" + "\n".join(m["content"] for m in messages[:i])
        bad += [(i, n) for n in unsupported(message["content"], context)]
    return bad


def presented_as_measured(answer: str, question: str) -> list[str]:
    """Numbers an answer states as measured without a lab result to take them from: numbers not in the question,
    outside a TOOL line, outside a sentence labelled as expectation, and not a checked derivation."""
    kept = []
    for line in answer.splitlines():
        if line.strip().startswith("TOOL:"):
            continue
        kept += [s for s in re.split(r"(?<=[.;!?])\s+", line) if not EXPECTATION.search(s)]
    return [n for n in unsupported(" ".join(kept), question) if "." in n]


def quoted_numbers(answer: str, result_text: str) -> tuple[int, int]:
    """(numbers quoted from the result that equal a value of it, numbers quoted in all): decimals in the answer
    that are neither rule constants nor checked derivations."""
    allowed = [float(n) for n in numbers(result_text)]
    derivations = derived(answer, allowed + list(RULE_CONSTANTS))
    quoted = [m for m in NUMBER.finditer(answer) if "." in m.group() and m.start() not in derivations
              and float(m.group()) not in RULE_CONSTANTS]
    good = sum(any(matches(m.group(), value) for value in allowed) for m in quoted)
    return good, len(quoted)
