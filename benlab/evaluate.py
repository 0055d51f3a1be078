"""Does ben-lab know the lab? (evaluate_ben_lab.py)

Held-out questions with checkable answers (phase identification, TRI comparison, drift class) are answered the way
a user sees them answered: the model writes its own reasoning (greedy, up to "Answer:"), then each candidate answer
is scored by its log-likelihood after that reasoning, as lm-evaluation-harness does for multiple choice; the
highest-scoring candidate is the model's answer. The same questions are put to the model with the adapter on
(fine-tuned) and off (base), and the held-out loss on the full answers is reported for both.

The other skills are judged on the model's own greedy answer (benlab/skills.py): the TOOL line for a request, the
explanation of a raw lab result (its phase, TRI order or drift class, and whether its quoted numbers are the
result's), measurement questions without a result (does it present a number as measured?), concept questions (are
the key facts there?), general-knowledge probes (does it keep what the base knew?), and scripted lab sessions run
through chat_with_lab.py with a live lab and llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benlab import skills
from benlab.common import BenLabError, atomic_write, ensure_writable_dir
from benlab.eval_cache import BaseAnswerCache, item_key
from benlab.generation import generate_replies, prompt_text
from benlab.samples import ANSWER_MARK
from benlab.tools import LAB_LOOP_SYSTEM_PROMPT

QUESTION_TYPES = {"phase_identification": 4, "tri_comparison": 2, "drift_class": 3}  # type -> number of choices
SESSION_TOKENS = 256  # per reply in a scripted lab session; an explanation takes about 200
# Longest reasoning kept: the training answers reach "Answer:" within 280 tokens (the digit walks and the worked
# saturation product with its digits so far). At 240, run 48 cut all 22 of its held-out saturation checks short.
REASONING_TOKENS = 320


def read_questions(path: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(multiple-choice questions, rows whose generated answer is judged, scripted lab sessions)."""
    from benlab.train import read_chats

    read_chats(str(path))  # validates the file, with line numbers
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions, generated, sessions = [], [], []
    for row in rows:
        meta = row.get("meta", {})
        if meta.get("kind") in QUESTION_TYPES and meta.get("answer") in meta.get("choices", []):
            questions.append({"kind": meta["kind"], "answer": meta["answer"], "choices": meta["choices"],
                              "chat": row["messages"]})
        elif meta.get("kind") in skills.GENERATED:
            generated.append(row)
        elif meta.get("kind") == "lab_session":
            sessions.append(row)
    if not questions and not generated:
        raise BenLabError(f"{path} has no checkable questions (meta.answer and meta.choices); regenerate it with "
                          "generate_lab_training_data.py")
    return questions, generated, sessions


def until_answer(text: str) -> str:
    """The reasoning up to and including "Answer:"; a reasoning that never got there is closed with it."""
    head, mark, _ = text.partition(ANSWER_MARK)
    return head + mark if mark else (head.rstrip() + " " + ANSWER_MARK).lstrip()


def reasonings(model, tokenizer, chats: list[list[dict]], bar=None) -> list[str]:
    """Each question's reasoning as the model writes it: greedy, stopped at "Answer:" or after REASONING_TOKENS."""
    texts = generate_replies(model, tokenizer, chats, REASONING_TOKENS, stop_strings=[ANSWER_MARK], bar=bar)
    return [until_answer(text) for text in texts]


def choice_scores(model, tokenizer, chat: list[dict], choices: list[str], reasoning: str = "") -> list[float]:
    """Sum of log-probabilities of each choice's tokens after the prompt and the reasoning, tokenized as in training
    (prompt and answer separately; after a reasoning the choice follows a space). The prompt runs once; its KV
    cache is repeated for the choices, which run as one right-padded batch."""
    import torch

    prompt_ids = tokenizer(prompt_text(tokenizer, chat), add_special_tokens=False)["input_ids"]
    if reasoning:
        prompt_ids += tokenizer(reasoning, add_special_tokens=False)["input_ids"]
        choices = [" " + c for c in choices]
    choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    width = max(len(c) for c in choice_ids)
    batch = torch.full((len(choices), width), tokenizer.pad_token_id, dtype=torch.long)
    for i, ids in enumerate(choice_ids):
        batch[i, : len(ids)] = torch.tensor(ids)
    batch = batch.to(model.device)
    with torch.no_grad():
        first = model(input_ids=torch.tensor([prompt_ids], device=model.device), use_cache=True, logits_to_keep=1)
        next_token = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
        cache = first.past_key_values
        cache.batch_repeat_interleave(len(choices))
        rest = torch.log_softmax(model(input_ids=batch, past_key_values=cache).logits.float(), dim=-1)
    scores = []
    for i, ids in enumerate(choice_ids):
        later = [float(rest[i, j - 1, ids[j]]) for j in range(1, len(ids))]
        scores.append(float(next_token[ids[0]]) + sum(later))
    return scores


def answer_all(model, tokenizer, questions: list[dict], bar=None) -> list[tuple[str, list[float]]]:
    """(reasoning, score per choice) for each question."""
    texts = reasonings(model, tokenizer, [q["chat"] for q in questions], bar)
    answers = []
    for question, text in zip(questions, texts):
        answers.append((text, choice_scores(model, tokenizer, question["chat"], question["choices"], text)))
        if bar is not None:
            bar.update()
    return answers


def answer_losses(model, tokenizer, chats: list[list[dict]]) -> list[list[float]]:
    """[summed cross-entropy, answer tokens] of each held-out sample (the training loss, on unseen data)."""
    import torch

    from benlab.train import answer_only_loss, encode, pad_batch

    losses = []
    with torch.no_grad():
        for chat in chats:
            row = encode(chat, tokenizer, 2048)
            if row is None:
                losses.append([0.0, 0])
                continue
            batch = {k: v.to(model.device) for k, v in pad_batch([row], tokenizer.pad_token_id).items()}
            count = int((batch["labels"][:, 1:] != -100).sum())
            losses.append([float(answer_only_loss(model, batch, count)) * count, count])
    return losses


def mean_loss(losses: list[list[float]]) -> float:
    """Mean cross-entropy per answer token over the samples."""
    return sum(total for total, _ in losses) / max(sum(count for _, count in losses), 1)


def multiple_choice_results(questions: list[dict], answers: dict) -> tuple[dict, list[dict]]:
    """Accuracy per question type for each model (the choice with the highest score is its pick), and one
    prediction record per question. `answers[model][i]` is (reasoning, score per choice) for question i."""
    results = {kind: {"base": 0, "finetuned": 0, "n": 0, "chance": round(1 / n, 3)} for kind, n in QUESTION_TYPES.items()}
    predictions = []
    for i, question in enumerate(questions):
        entry = results[question["kind"]]
        entry["n"] += 1
        prediction = {"kind": question["kind"], "answer": question["answer"], "choices": question["choices"]}
        for name in ("base", "finetuned"):
            reasoning, scores = answers[name][i]
            pick = question["choices"][max(range(len(scores)), key=scores.__getitem__)]
            entry[name] += pick == question["answer"]
            prediction[name] = {"reasoning": reasoning, "scores": scores, "pick": pick}
        predictions.append(prediction)
    for entry in results.values():
        for name in ("base", "finetuned"):
            entry[name] = round(entry[name] / entry["n"], 4) if entry["n"] else None
    return results, predictions


def generated_answers(model, tokenizer, rows: list[dict], bar=None) -> list[str]:
    """Each row's answer, generated per kind with that kind's token budget."""
    answers = [""] * len(rows)
    for kind, (_, tokens) in skills.GENERATED.items():
        index = [i for i, row in enumerate(rows) if row["meta"]["kind"] == kind]
        replies = generate_replies(model, tokenizer, [rows[i]["messages"] for i in index], tokens, bar=bar)
        for i, reply in zip(index, replies):
            answers[i] = reply
    return answers


def run_sessions(sessions: list[dict], gguf: Path, lab_url: str, bar=None) -> list[dict]:
    """Each scripted session through `chat_with_lab.py --questions FILE --json` on llama.cpp and the live lab (one
    process loads the model once; each question is its own chat, as with --once): the whole exchange, or why the
    session broke (judged by judge_session)."""
    import subprocess
    import sys
    import tempfile

    script = Path(__file__).resolve().parent.parent / "chat_with_lab.py"
    results = []
    with tempfile.TemporaryDirectory() as folder:
        questions, log = Path(folder) / "sessions.txt", Path(folder) / "stderr.txt"
        questions.write_text("".join(" ".join(row["messages"][1]["content"].split()) + "\n" for row in sessions))
        with log.open("w") as errors, subprocess.Popen(
                [sys.executable, str(script), "--questions", str(questions), "--json", "--backend", "llama-cpp",
                 "--gguf", str(gguf), "--api-url", lab_url, "--max-tokens", str(SESSION_TOKENS)],
                stdout=subprocess.PIPE, stderr=errors, text=True) as run:
            for line in run.stdout:
                record = json.loads(line)
                # a session that breaks (e.g. outgrows the context) counts as failed, with why
                results.append({"error": record["error"]} if "error" in record else {"exchange": record})
                if bar is not None:
                    bar.update()
        missed = len(sessions) - len(results)
        if missed:  # the process ended early: the sessions it did not reach failed, with its last message
            why = (log.read_text().strip().splitlines() or ["no message"])[-1]
            results += [{"error": why}] * missed
            if bar is not None:
                bar.update(missed)
    return results


def judge_session(row: dict, run: dict) -> dict:
    question = row["messages"][1]["content"]
    if "error" in run:
        return {"question": question, "answer": "", "calls": [], "ok": False, "error": run["error"]}
    last = run["exchange"]["turns"][-1]
    return {"question": question, "answer": last["answer"], "calls": last["calls"],
            **skills.session_right(row["meta"], run["exchange"])}


def unloadable_adapter(adapter_dir: Path, error: Exception) -> BenLabError:
    from benlab.export import damaged_adapter

    return damaged_adapter(adapter_dir, f"cannot be loaded as an adapter ({str(error).splitlines()[0][:200]})")


def readable_adapter(adapter_dir: Path) -> None:
    """The adapter's config parses and its weights file's header and size are whole (a copy cut short fails here)."""
    from safetensors import SafetensorError, safe_open

    try:
        json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as weights:
            weights.keys()
    except (OSError, ValueError, SafetensorError) as error:
        raise unloadable_adapter(adapter_dir, error) from None


def first_of_each_kind(rows: list[dict], limit: int | None) -> list[dict]:
    """The first `limit` rows of each kind (all with no limit), in file order."""
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        kind = row["kind"] if "kind" in row else row["meta"]["kind"]
        seen[kind] = seen.get(kind, 0) + 1
        if limit is None or seen[kind] <= limit:
            kept.append(row)
    return kept


def base_gguf(base) -> Path | None:
    """The GGUF file the base model was loaded from (the embedded default), if any."""
    if base.gguf_file:
        return Path(base.path) / base.gguf_file
    return None


def evaluate(adapter_dir: Path, eval_path: Path, limit: int | None = None, merged_gguf: Path | None = None,
             base_cache: bool = True) -> dict:
    import torch
    from peft import PeftModel
    from safetensors import SafetensorError
    from tqdm import tqdm

    from benlab.lab_server import LocalLab
    from benlab.models import load_model, trained_base
    from benlab.train import precision_settings

    base = trained_base(adapter_dir)  # first: without a trained adapter there is nothing to evaluate
    questions, generated, sessions = read_questions(eval_path)
    questions, generated, sessions = (first_of_each_kind(rows, limit) for rows in (questions, generated, sessions))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)  # the trained tokenizer, with its chat template
    # bf16 where the CPU (or GPU) has it natively, as in training: generation is 1.8x faster than fp32 on 2 cores.
    precision = precision_settings("auto")[0]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"[eval] loading {base.name} ({precision}, {device}) and the adapter from {adapter_dir}", flush=True)
    readable_adapter(adapter_dir)  # before the base model loads (and prints its progress bars)
    try:
        model = PeftModel.from_pretrained(load_model(base, dtype), adapter_dir).to(device).eval()
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:  # what only loading finds, e.g. wrong shapes
        raise unloadable_adapter(adapter_dir, error) from None
    chats = [q["chat"] for q in questions]
    probes = skills.probe_chats()[: limit and 4 * limit]
    loop_probes = skills.probe_chats(LAB_LOOP_SYSTEM_PROMPT)[: len(probes)]  # as chat_with_lab.py asks them
    cache = BaseAnswerCache(base, {"precision": precision, "device": device, "reasoning": REASONING_TOKENS,
                                   "session": SESSION_TOKENS, "probe_tokens": skills.PROBE_TOKENS},
                           enabled=base_cache)
    # what is asked, without the reference answer (chat[-1]): a reworded reference is no new question; a generated
    # answer's key holds its kind's token budget, so a new kind adds answers and keeps the others
    asked = {"choices": [item_key(q["chat"][:-1], q["choices"]) for q in questions],
             "texts": [item_key(row["meta"]["kind"], skills.GENERATED[row["meta"]["kind"]][1], row["messages"][:-1])
                       for row in generated],
             "probes": [item_key(chat) for chat in probes],
             "loop_probes": [item_key(chat) for chat in loop_probes],
             "loss": [item_key(chat) for chat in chats]}
    new = {section: cache.missing(section, keys) for section, keys in asked.items()}
    n_asked, n_new = (sum(len(rows[s]) for s in ("choices", "texts", "probes", "loop_probes")) for rows in (asked, new))
    if base_cache and n_new < n_asked:
        print(f"[eval] base model: reusing {n_asked - n_new} of its {n_asked} answers from {cache.path} (same base "
              f"model and settings; --no-base-cache recomputes them)"
              + (f"; {n_new} new, answered now" if n_new else ""), flush=True)

    def answer_everything(pick: dict[str, list[int]], bar) -> dict[str, dict[int, object]]:
        """The answers to the picked questions of each section, by position."""
        replies = {"choices": answer_all(model, tokenizer, [questions[i] for i in pick["choices"]], bar),
                   "texts": generated_answers(model, tokenizer, [generated[i] for i in pick["texts"]], bar),
                   "probes": generate_replies(model, tokenizer, [probes[i] for i in pick["probes"]],
                                              skills.PROBE_TOKENS, bar=bar),
                   "loop_probes": generate_replies(model, tokenizer, [loop_probes[i] for i in pick["loop_probes"]],
                                                   skills.PROBE_TOKENS, bar=bar),
                   "loss": answer_losses(model, tokenizer, [chats[i] for i in pick["loss"]])}
        return {section: dict(zip(pick[section], replies[section])) for section in pick}

    every = {section: list(range(len(keys))) for section, keys in asked.items()}
    with tqdm(total=len(new["choices"]) + n_new + len(questions) + n_asked, desc="answering", unit="q") as bar:
        with model.disable_adapter():
            base_new = answer_everything(new, bar)
        by_model = {"base": {section: cache.fill(section, keys, base_new[section]) for section, keys in asked.items()}}
        if n_new:
            cache.save()
        # The adapter merged into the weights: the same model, without the adapter's per-layer overhead.
        model = model.merge_and_unload()
        by_model["finetuned"] = {section: [replies[i] for i in every[section]]
                                 for section, replies in answer_everything(every, bar).items()}
    answers = {name: by_model[name]["choices"] for name in by_model}
    texts = {name: by_model[name]["texts"] for name in by_model}
    probe_answers = {name: by_model[name]["probes"] for name in by_model}
    losses = {name: mean_loss(by_model[name]["loss"]) for name in by_model}
    results, predictions = multiple_choice_results(questions, answers)
    # Generated answers, judged.
    counts: dict[str, dict] = {}
    quoted = {"base": [0, 0], "finetuned": [0, 0]}
    for i, row in enumerate(generated):
        key = skills.GENERATED[row["meta"]["kind"]][0]
        entry = counts.setdefault(key, {"base": 0, "finetuned": 0, "n": 0})
        entry["n"] += 1
        prediction = {"kind": row["meta"]["kind"], "question": row["messages"][-2]["content"][:2000],
                      "expected": row["messages"][-1]["content"]}
        if row["meta"]["kind"] == "measurement":  # its answers are also checked for refusing what the lab can run
            refused = counts.setdefault("false_refusals", {"base": 0, "finetuned": 0, "n": 0})
            refused["n"] += 1
            expected = counts.setdefault("expectations", {"base": 0, "finetuned": 0, "n": 0})  # and the theory given
            expected["n"] += 1
        for name in ("base", "finetuned"):
            judged = skills.verdict(row, texts[name][i])
            # invented_measurements counts the failures (lower is better); the other keys count successes
            entry[name] += (not judged["ok"]) if key == "invented_measurements" else judged["ok"]
            if "refused" in judged:
                refused[name] += judged["refused"]
                expected[name] += judged["expectation"]
            if "quoted" in judged:
                quoted[name][0] += judged["quoted_right"]
                quoted[name][1] += judged["quoted"]
            prediction[name] = {"answer": texts[name][i], **judged}
        predictions.append(prediction)
    for key, entry in counts.items():
        results[key] = {name: round(entry[name] / entry["n"], 4) for name in ("base", "finetuned")} | {"n": entry["n"]}
    if quoted["finetuned"][1] or quoted["base"][1]:
        results["quoted_values"] = {name: round(g / n, 4) if n else None for name, (g, n) in quoted.items()}
        results["quoted_values"]["n"] = quoted["finetuned"][1]
    # Derived numbers: every worked step the answers write, in the reasoning, the explanations and the sessions.
    derived = {name: [0, 0] for name in ("base", "finetuned")}

    def count_derivations(name: str, answer: str, context: str) -> None:
        right, written = skills.derivations_right(answer, context)
        derived[name][0] += right
        derived[name][1] += written

    for name in derived:
        for question, (reasoning, _) in zip(questions, answers[name]):
            count_derivations(name, reasoning, "\n".join(m["content"] for m in question["chat"][:-1]))
        for row, text in zip(generated, texts[name]):
            count_derivations(name, text, skills.context_text(row))
    # General knowledge: of the probes the base answers right, the share the fine-tuned model still does.
    right = {name: {i for i, a in enumerate(probe_answers[name]) if skills.probe_right(i, a)} for name in probe_answers}
    kept = right["finetuned"] & right["base"]
    results["general_retention"] = {"base": 1.0 if right["base"] else None,
                                    "finetuned": round(len(kept) / len(right["base"]), 4) if right["base"] else None,
                                    "n": len(right["base"])}
    results["general_probes"] = {name: round(len(right[name]) / len(probes), 4) for name in right} | {"n": len(probes)}
    for i, (question, accepted) in enumerate(skills.PROBES[: len(probes)]):
        predictions.append({"kind": "general_probe", "question": question, "expected": list(accepted),
                            **{name: {"answer": probe_answers[name][i], "ok": i in right[name]} for name in right}})
    # The same probes in the lab loop: of those the base answers right, the share answered right, not run as a tool.
    loop_answers = {name: by_model[name]["loop_probes"] for name in by_model}
    loop_right = {name: {i for i in right["base"] if skills.loop_probe_right(i, loop_answers[name][i])}
                  for name in loop_answers}
    results["loop_general"] = {name: round(len(loop_right[name]) / len(right["base"]), 4) if right["base"] else None
                               for name in loop_right} | {"n": len(right["base"])}
    for i in sorted(right["base"]):
        question, accepted = skills.PROBES[i]
        predictions.append({"kind": "loop_probe", "question": question, "expected": list(accepted),
                            **{name: {"answer": loop_answers[name][i], "ok": i in loop_right[name]}
                               for name in loop_right}})
    # Scripted lab sessions through chat_with_lab.py on llama.cpp.
    ggufs = {"base": base_gguf(base), "finetuned": merged_gguf}
    if sessions and all(path is not None and path.is_file() for path in ggufs.values()):
        keys = [item_key(row["messages"][1]["content"]) for row in sessions]
        new_sessions = cache.missing("sessions", keys)
        if base_cache and len(new_sessions) < len(sessions):
            print(f"[eval] base model: reusing {len(sessions) - len(new_sessions)} of its {len(sessions)} lab sessions "
                  f"from {cache.path}", flush=True)
        with LocalLab() as lab, tqdm(total=len(new_sessions) + len(sessions), desc="lab sessions", unit="session") as bar:
            runs = {"base": run_sessions([sessions[i] for i in new_sessions], ggufs["base"], lab.url, bar)
                    if new_sessions else [],
                    "finetuned": run_sessions(sessions, ggufs["finetuned"], lab.url, bar)}
        runs["base"] = cache.fill("sessions", keys, dict(zip(new_sessions, runs["base"])))
        if new_sessions:
            cache.save()
        runs = {name: [judge_session(row, run) for row, run in zip(sessions, runs[name])] for name in runs}
        for name in runs:
            for run in runs[name]:
                count_derivations(name, run["answer"], run["question"] + "\n" + json.dumps(run["calls"]))
        results["lab_session"] = {name: round(sum(r["ok"] for r in runs[name]) / len(sessions), 4) for name in runs}
        results["lab_session"]["n"] = len(sessions)
        for i, row in enumerate(sessions):
            predictions.append({"kind": "lab_session", "question": row["messages"][1]["content"],
                                **{name: runs[name][i] for name in runs}})
    elif sessions:
        why = {"base": "no base GGUF: the base model was not loaded from one",
               "finetuned": f"no {merged_gguf or 'merged GGUF (--gguf)'}: export the model with export_ben_lab.py first"}
        missing = [why[name] for name, path in ggufs.items() if path is None or not path.is_file()]
        print(f"[eval] lab sessions skipped: {'; '.join(missing)}")
    results["derived_values"] = {name: round(g / n, 4) if n else None for name, (g, n) in derived.items()}
    results["derived_values"]["n"] = derived["finetuned"][1]
    results["heldout_loss"] = {name: round(loss, 4) for name, loss in losses.items()}
    results["predictions"] = predictions
    return results


GOALS = {  # report key -> (what it measures, goal)
    "phase_identification": ("which phase produced these features (reasoning, then the pick)", ">= 0.90"),
    "tri_comparison": ("which of two measured TRIs is larger", ">= 0.90"),
    "drift_class": ("drift class from the drifts in the question", ">= 0.90"),
    "tool_call": ("a request -> exactly one right TOOL line", ">= 0.95"),
    "tool_retry": ("a refused TOOL line's error -> exactly one right TOOL line", ">= 0.90"),
    "result_phase": ("a raw /run_phase_experiment result -> its phase (a fingerprint named must be that phase's)", ">= 0.95"),
    "result_tri_compare": ("two raw /tri results -> which TRI is larger", ">= 0.90"),
    "result_drift": ("a raw /replay_drift result -> Grows / Saturates / Flat", ">= 0.90"),
    "result_discovery": ("a raw /discovery result -> each cluster under the number the result gives it, with its runs "
                         "by phase, none left out or made up", ">= 0.90 (ours)"),
    "quoted_values": ("numbers quoted in those explanations that are the result's", ">= 0.95"),
    "derived_values": ("worked steps in the answers (\"0.8 × 0.546 = 0.4368\") whose result is right, from the "
                       "conversation's numbers", ">= 0.95 (ours)"),
    "invented_measurements": ("measurement questions without a result answered with a number as measured", "<= 0.05"),
    "false_refusals": ("the same questions, all within the lab's limits, answered as if the lab could not run them", "<= 0.05 (ours)"),
    "expectations": ("the same questions: the expectation added is the theory's for that quantity and phase, "
                     "worked right", ">= 0.90 (ours)"),
    "concepts": ("concept questions (held-out phrasings) answered with the key facts", ">= 0.80"),
    "loop_concepts": ("the same questions under chat_with_lab.py's TOOL-protocol prompt: the key facts, no TOOL line",
                      ">= 0.80 (ours)"),
    "size_questions": ("whether the lab can run N qubits (held-out wordings, chat_with_lab.py's prompt): can or "
                       "cannot as its limits say, that limit named, no TOOL line", ">= 0.90 (ours)"),
    "general_retention": ("of the probes the base answers right, the share the fine-tuned model keeps", ">= 0.90"),
    "general_probes": ("general-knowledge probes answered right", ""),
    "loop_general": ("of the probes the base answers right, the share answered right (no TOOL line) under "
                     "chat_with_lab.py's prompt", ">= 0.90 (ours)"),
    "lab_session": ("scripted chat_with_lab.py sessions (live lab, llama.cpp) with every call run and the answer right", ">= 0.90"),
}


def report_markdown(results: dict, eval_path: Path, seconds: float) -> str:
    lines = ["# ben-lab evaluation", "",
             f"Held-out questions from `{eval_path}` (experiments whose seeds never appear in training, wordings "
             "never trained on). Multiple-choice kinds: each model writes its own reasoning up to \"Answer:\", then "
             "each candidate is scored by log-likelihood. The other kinds judge the model's own greedy answer. Every "
             "answer and verdict is in `predictions.json`.", "",
             "| skill | what is measured | base | fine-tuned | goal | n |", "| --- | --- | --- | --- | --- | --- |"]
    for key, (what, goal) in GOALS.items():
        r = results.get(key)
        if r and r.get("n"):
            cell = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
            lines.append(f"| {key} | {what} | {cell(r['base'])} | {cell(r['finetuned'])} | {goal} | {r['n']} |")
    loss = results["heldout_loss"]
    lines += ["", f"Held-out loss per answer token: base {loss['base']:.3f}, fine-tuned {loss['finetuned']:.3f}.", "",
              f"Evaluated in {seconds:.0f} s. Plots: `accuracy.png`, `lab_phases.png`.", ""]
    return "\n".join(lines)


def plot_accuracy(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = [k for k in GOALS if results.get(k, {}).get("n") and results[k]["base"] is not None]
    x = np.arange(len(kinds))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for offset, name in ((-0.2, "base"), (0.2, "finetuned")):
        ax.bar(x + offset, [results[k][name] or 0 for k in kinds], 0.4, label=name.replace("finetuned", "fine-tuned"))
    chance = [(i, results[k]["chance"]) for i, k in enumerate(kinds) if "chance" in results[k]]
    if chance:
        ax.scatter(*zip(*chance), color="black", marker="_", s=500, label="chance", zorder=3)
    ax.set_xticks(x, [k.replace("_", " ") for k in kinds], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of held-out questions (invented, false refusals: lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_phases(eval_path: Path, path: Path) -> None:
    """The lab data itself: held-out runs of the four phases in two of their features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    points: dict[str, list] = {}
    for line in eval_path.read_text().splitlines():
        row = json.loads(line)
        values = row["meta"].get("values", {})
        if row["meta"].get("kind") == "phase_identification" and "string_order" in values:
            x = values["correlation_length_norm"] - values["string_order"]  # ZZ order up (ising), string order down (cluster)
            points.setdefault(row["meta"]["answer"], []).append((values["entanglement_norm"], x))
    for phase, xyz in sorted(points.items()):
        ax.scatter([p[0] for p in xyz], [p[1] for p in xyz], label=phase, alpha=0.7)
    ax.set_xlabel("half-chain entanglement / Page value")
    ax.set_ylabel("correlation length - string order")
    ax.set_title("held-out lab runs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="evaluate_ben_lab.py",
        description="Score the base and the fine-tuned model on held-out lab questions; write eval/report.md, "
        "eval/report.json and plots.",
    )
    parser.add_argument("--adapter-dir", type=Path, default=Path("ben-lab-lora"), help="trained adapter (default %(default)s)")
    parser.add_argument("--eval-data", type=Path, default=Path("data/lab_eval.jsonl"), help="held-out file (default %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=Path("eval"), help="where the report goes (default %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N questions of each kind")
    parser.add_argument("--no-base-cache", action="store_true",
                        help="recompute the base model's answers instead of reusing those of an earlier run with the "
                        "same base model, held-out file and settings")
    parser.add_argument("--gguf", type=Path, default=Path("ben-lab.gguf"),
                        help="merged GGUF for the scripted lab sessions in llama.cpp (default %(default)s; "
                        "skipped with a note when it does not exist)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.eval_data.is_file():
        raise BenLabError(f"{args.eval_data} not found; create it with generate_lab_training_data.py --start-lab")
    ensure_writable_dir(args.out_dir, "--out-dir")  # before half an hour of answers, not after
    started = time.perf_counter()
    results = evaluate(args.adapter_dir, args.eval_data, args.limit, args.gguf, base_cache=not args.no_base_cache)
    seconds = time.perf_counter() - started
    predictions = results.pop("predictions")
    atomic_write(args.out_dir / "report.json", json.dumps(results, indent=2))
    atomic_write(args.out_dir / "predictions.json", json.dumps(predictions, indent=1))
    atomic_write(args.out_dir / "report.md", report_markdown(results, args.eval_data, seconds))
    plot_accuracy(results, args.out_dir / "accuracy.png")
    plot_phases(args.eval_data, args.out_dir / "lab_phases.png")
    print(report_markdown(results, args.eval_data, seconds))
    return 0
