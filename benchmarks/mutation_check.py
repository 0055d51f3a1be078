"""Do the tests catch deliberate one-line bugs? Each mutation is applied alone to a scratch copy of the repository,
the tests named with it run there, and the table says which mutations the suite caught (a test failed).

    .venv/bin/python -m benchmarks.mutation_check            # every mutation (about 10 minutes on 2 cores)
    .venv/bin/python -m benchmarks.mutation_check --only 1 3  # some of them

Not a test: it runs the suite many times. Every listed bug must be caught; a new core computation gets a line here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (what breaks, file, the exact line fragment, its replacement, the tests that should catch it)
MUTATIONS = [
    ("loss trains each position to copy its own input token", "benlab/train.py",
     "targets = labels[:, keep + 1]", "targets = labels[:, keep]", "tests/test_train.py"),
    ("reasoning generation no longer stops at 'Answer:'", "benlab/evaluate.py",
     "REASONING_TOKENS, stop_strings=[ANSWER_MARK]", "REASONING_TOKENS", "tests/test_evaluate.py"),
    ("held-out seeds no longer odd", "benlab/datagen.py",
     "return 2 * rng.randrange(2**29) + (split == \"eval\")", "return 2 * rng.randrange(2**29)", "tests/test_datagen.py"),
    ("only the last assistant turn is trained", "benlab/train.py",
     "if message[\"role\"] != \"assistant\" or message.get(\"train\") is False:",
     "if message[\"role\"] != \"assistant\" or message.get(\"train\") is False or i != len(chat) - 1:",
     "tests/test_train.py"),
    ("CPU precision ignores native bf16", "benlab/train.py",
     "choice = \"bf16\" if (cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16) else \"fp32\"",
     "choice = \"fp32\"", "tests/test_train.py"),
    ("a TOOL line anywhere in the reply counts as a call", "benlab/tools.py",
     "first = reply.strip().split(\"\\n\", 1)[0].strip()", "first = reply.strip().split(\"\\n\")[-1].strip()",
     "tests/test_tools.py"),
    ("omitted arguments are not compared with the lab's defaults", "benlab/tools.py",
     "full_got, full_want = {**defaults, **got.args}, {**defaults, **want.args}",
     "full_got, full_want = got.args, {**defaults, **want.args}", "tests/test_tools.py"),
    ("the lab's answer is not sent back to the model", "benlab/chat.py",
     "        messages.append({\"role\": \"user\", \"content\": result})", "        pass", "tests/test_chat.py"),
    ("grounding accepts any number", "benlab/grounding.py",
     "return abs(q - value) <= 10 ** -decimals(quoted) + 1e-12", "return True", "tests/test_grounding.py"),
    ("a derivation is accepted without evaluating it", "benlab/grounding.py",
     "if got is not None and same(result, got):", "if True:", "tests/test_grounding.py"),
    ("a lab session counts without checking the answer", "benlab/skills.py",
     "            ok = any(\".\" in n and grounding.matches(n, result[\"TRI\"]) for n in grounding.numbers(answer))",
     "            ok = True", "tests/test_skills.py"),
    ("accuracy counts the wrong picks", "benlab/evaluate.py",
     "entry[name] += pick == question[\"answer\"]", "entry[name] += pick != question[\"answer\"]",
     "tests/test_evaluate.py"),
    ("identification threshold moved", "benlab/samples.py",
     "if round(values[feature], 2) > FINGERPRINT_LEVEL:", "if round(values[feature], 2) > 0.9:",
     "tests/test_datagen.py"),
    ("probe answers matched as substrings of longer numbers", "benlab/general.py",
     "rf\"(?<![\\w.]){re.escape(a)}(?:\\.0+)?(?![\\w]|\\.\\d)\"", "re.escape(a)", "tests/test_skills.py"),
    ("Gemma's norms converted without the + 1", "benlab/hf_to_gguf.py",
     "            data = data + 1", "            data = data", "tests/test_llama_cpp.py"),
    ("combined adapters ignore their weights", "benlab/export.py",
     "b * (weight * adapter.alpha / adapter.rank)", "b * (adapter.alpha / adapter.rank)", "tests/test_llama_cpp.py"),
    ("the adapter's q/k rows are not permuted for llama", "benlab/export.py",
     "b = permute_rows(b, adapter.n_head)", "b = b", "tests/test_llama_cpp.py"),
    ("Llama 3's rope scaling left out of the conversion", "benlab/hf_to_gguf.py",
     'if rope["rope_type"] == "llama3":', "if False:", "tests/test_llama_cpp.py"),
    ("replay keeps the base's answers that got a known fact wrong", "benlab/train.py",
     "and (prompt not in REPLAY_ANSWERS or has_answer(text, REPLAY_ANSWERS[prompt])))", ")",
     "tests/test_train.py::test_general_replay_asks_again_where_the_base_dragged_the_lab_in_or_got_the_fact_wrong_or_late"),
    ("replay keeps the aside after a known answer", "benlab/train.py",
     "return answer_clause(first_sentence(reply), REPLAY_ANSWERS[prompt]) if", "return first_sentence(reply) if",
     "tests/test_train.py::test_general_replay_keeps_the_answers_clause_and_asks_again_where_the_base_loops_or_writes_a_false_sum"),
    ("replay keeps replies that loop", "benlab/train.py", "and not repeats_itself(text)", "",
     "tests/test_train.py::test_general_replay_keeps_the_answers_clause_and_asks_again_where_the_base_loops_or_writes_a_false_sum"),
    ("replay keeps an instruction the base did not follow", "benlab/train.py", "and does_as_asked(prompt, text)", "",
     "tests/test_train.py::test_an_instruction_is_replayed_only_when_the_base_did_what_it_asked"),
    ("replay keeps false arithmetic", "benlab/train.py", "and not grounding.false_arithmetic(text)", "",
     "tests/test_train.py::test_general_replay_keeps_the_answers_clause_and_asks_again_where_the_base_loops_or_writes_a_false_sum"),
    ("replay keeps the base's answers that dragged the lab in", "benlab/train.py",
     "return (bool(reply) and not LAB_WORDS.search(reply)", "return (bool(reply)",
     "tests/test_train.py::test_general_replay_asks_again_where_the_base_dragged_the_lab_in_or_got_the_fact_wrong_or_late"),
    ("a drift result explained with the first run's drift", "benlab/samples.py",
     'last = response["runs"][-1]', 'last = response["runs"][0]',
     "tests/test_datagen.py::test_a_drift_result_is_explained_by_its_trend_and_the_deepest_drift"),
    ("the digit walk points the sign the wrong way", "benlab/samples.py",
     'sign = ">" if a > b else "<"', 'sign = "<" if a > b else ">"',
     "tests/test_datagen.py::test_the_digit_walk_stops_at_the_first_place_that_differs"),
    ("comparison drills name the smaller run", "benlab/number_drills.py",
     'winner = "Run A" if sign == ">" else "Run B"', 'winner = "Run B" if sign == ">" else "Run A"',
     "tests/test_grounding.py::test_the_drills_walk_the_comparison_and_work_the_product_right"),
    ("product drills multiply the wrong drift", "benlab/number_drills.py",
     'samples.level_product("0.8", last_text)', 'samples.level_product("0.8", prev_text)',
     "tests/test_grounding.py::test_the_drills_walk_the_comparison_and_work_the_product_right"),
    ("a drift quoted at the wrong depth passes", "benlab/skills.py",
     "if int(depth) not in drift_at or not grounding.matches(value, drift_at[int(depth)])",
     "if int(depth) not in drift_at",
     "tests/test_skills.py::test_a_drift_quoted_at_another_depth_is_not_quoted_right"),
    ("A projected into the general subspace only at the start, not after each update", "benlab/general_subspace.py",
     "            project_out(model, bases)\n", "            pass\n",
     "tests/test_train.py::test_keep_general_trains_every_A_orthogonal_to_the_general_subspace"),
    ("the general subspace from the smallest eigenvectors", "benlab/general_subspace.py",
     "values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)", "values = values.clamp(min=0)",
     "tests/test_train.py::test_the_general_subspace_is_the_fewest_top_directions_holding_the_energy"),
    ("the general replay trained once whatever --replay-copies says", "benlab/train.py",
     "chats += replay * config.replay_copies", "chats += replay",
     "tests/test_train.py::test_each_general_replay_answer_is_trained_replay_copies_times"),
    ("a discovery explanation's invented cluster passes", "benlab/skills.py",
     "for i, counts in described if want.get(i) != counts]", "for i, counts in described if i not in want]",
     "tests/test_skills.py::test_a_discovery_explanation_counts_when_every_cluster_is_the_results"),
    ("a discovery explanation that leaves a cluster out passes", "benlab/skills.py",
     "    return wrong + [f\"cluster {i} left out\" for i in want if i not in {i for i, _ in described}]",
     "    return wrong", "tests/test_skills.py::test_a_discovery_explanation_counts_when_every_cluster_is_the_results"),
    ("a cluster described by a count alone passes (the old claim pattern)", "benlab/skills.py",
     "((?:(?!cluster \\d)[^;])*?)(?=;|\\.\\s|\\.$|,? cluster \\d|$)", "(no runs|\\d+ \\w+(?: and \\d+ \\w+)*)",
     "tests/test_skills.py::test_a_discovery_explanation_counts_when_every_cluster_is_the_results"),
    ("a clean discovery result explained without what its scores mean", "benlab/samples.py",
     "    if not mixed:  # what the scores mean", "    if False:  # what the scores mean",
     "tests/test_datagen.py::test_a_discovery_explanation_numbers_the_clusters_as_the_lab_does"),
    ("discovery requests never state k as a count of groups", "benlab/tool_samples.py",
     "forms[1:-1] + TRAINED_ONLY_FORMS.get(key, ())", "forms[1:-1]",
     "tests/test_tools.py"),
    ("no held-out raw discovery results", "benlab/datagen.py",
     "RAW_RESULT_KINDS = {\"run_phase\": \"result_phase\", \"discovery\": \"result_discovery\"}",
     "RAW_RESULT_KINDS = {\"run_phase\": \"result_phase\"}", "tests/test_evaluate.py::test_report_files"),
]


def run(index: int, mutation: tuple) -> tuple[bool, float, str]:
    what, file, old, new, tests = mutation
    with tempfile.TemporaryDirectory(prefix=f"mutant{index}-") as scratch:
        copy = Path(scratch) / "repo"
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.split()
        for name in files:
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / name).is_file():
                shutil.copy2(ROOT / name, target)
        source = (copy / file).read_text()
        if source.count(old) != 1:
            return False, 0.0, f"the fragment is not in {file} exactly once: update this mutation"
        (copy / file).write_text(source.replace(old, new))
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", tests],
                                cwd=copy, capture_output=True, text=True)
        summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        return result.returncode == 1, time.perf_counter() - started, summary  # 1: a test failed; 4, 5: none ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply each deliberate bug alone and report whether the tests catch it.")
    parser.add_argument("--only", type=int, nargs="+", help="mutation numbers to run (default: all)")
    args = parser.parse_args(argv)
    chosen = args.only or list(range(1, len(MUTATIONS) + 1))
    print("| # | mutation | tests | caught | seconds | pytest's last line |")
    print("| --- | --- | --- | --- | --- | --- |")
    missed = 0
    for number in chosen:
        caught, seconds, summary = run(number, MUTATIONS[number - 1])
        missed += not caught
        what, _, _, _, tests = MUTATIONS[number - 1]
        print(f"| {number} | {what} | {tests} | {'yes' if caught else '**NO**'} | {seconds:.0f} | {summary} |", flush=True)
    print(f"\n{len(chosen) - missed} of {len(chosen)} caught")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
