"""Does ben-lab know the lab? (evaluate_ben_lab.py)

Held-out questions with checkable answers (phase identification, TRI comparison, drift class) are answered the way
a user sees them answered: the model writes its own reasoning (greedy, up to "Answer:"), then each candidate answer
is scored by its log-likelihood after that reasoning, as lm-evaluation-harness does for multiple choice; the
highest-scoring candidate is the model's answer. The same questions are put to the model with the adapter on
(fine-tuned) and off (base), and the held-out loss on the full answers is reported for both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benlab.common import BenLabError, atomic_write
from benlab.samples import ANSWER_MARK

QUESTION_TYPES = {"phase_identification": 4, "tri_comparison": 2, "drift_class": 3}  # type -> number of choices
REASONING_TOKENS = 120  # longest reasoning kept; the training answers reach "Answer:" within about 100 tokens
GENERATION_BATCH = 32  # decoding reads every weight once per step: wide batches share that cost


def read_questions(path: Path) -> list[dict]:
    from benlab.train import read_chats

    chats = read_chats(str(path))  # validates the file, with line numbers
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    questions = []
    for row, chat in zip(rows, chats):
        meta = row.get("meta", {})
        if meta.get("kind") in QUESTION_TYPES and meta.get("answer") in meta.get("choices", []):
            questions.append({"kind": meta["kind"], "answer": meta["answer"], "choices": meta["choices"], "chat": chat})
    if not questions:
        raise BenLabError(f"{path} has no checkable questions (meta.answer and meta.choices); regenerate it with "
                          "generate_lab_training_data.py")
    return questions


def prompt_text(tokenizer, chat: list[dict]) -> str:
    return tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)


def until_answer(text: str) -> str:
    """The reasoning up to and including "Answer:"; a reasoning that never got there is closed with it."""
    head, mark, _ = text.partition(ANSWER_MARK)
    return head + mark if mark else (head.rstrip() + " " + ANSWER_MARK).lstrip()


def reasonings(model, tokenizer, chats: list[list[dict]], bar=None) -> list[str]:
    """Each question's reasoning as the model writes it: greedy decoding in left-padded batches, stopped at
    "Answer:" or after REASONING_TOKENS tokens."""
    import torch

    texts = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right, so the padding goes on the left
    try:
        for start in range(0, len(chats), GENERATION_BATCH):
            prompts = [prompt_text(tokenizer, chat) for chat in chats[start : start + GENERATION_BATCH]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=REASONING_TOKENS, do_sample=False, top_p=None, top_k=None,
                                     temperature=None, stop_strings=[ANSWER_MARK], tokenizer=tokenizer,
                                     pad_token_id=tokenizer.pad_token_id)
            for row in out[:, batch["input_ids"].shape[1] :]:
                texts.append(until_answer(tokenizer.decode(row, skip_special_tokens=True)))
            if bar is not None:
                bar.update(len(prompts))
    finally:
        tokenizer.padding_side = side
    return texts


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
    with torch.no_grad():
        first = model(input_ids=torch.tensor([prompt_ids]), use_cache=True, logits_to_keep=1)
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


def heldout_loss(model, tokenizer, chats: list[list[dict]]) -> float:
    """Mean cross-entropy per answer token over the held-out samples (the training loss, on unseen data)."""
    import torch

    from benlab.train import answer_only_loss, encode, pad_batch

    total, tokens = 0.0, 0
    with torch.no_grad():
        for chat in chats:
            row = encode(chat, tokenizer, 2048)
            if row is None:
                continue
            batch = pad_batch([row], tokenizer.pad_token_id)
            count = int((batch["labels"][:, 1:] != -100).sum())
            total += float(answer_only_loss(model, batch, count)) * count
            tokens += count
    return total / max(tokens, 1)


def evaluate(adapter_dir: Path, eval_path: Path, limit: int | None = None) -> dict:
    import torch
    from peft import PeftModel
    from tqdm import tqdm

    from benlab.models import BaseModel, load_model

    metrics_path = adapter_dir / "metrics.json"
    if not metrics_path.is_file():
        raise BenLabError(f"{adapter_dir} has no metrics.json; train first with finetune_ben_lab.py")
    questions = read_questions(eval_path)[:limit]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)  # the trained tokenizer, with its chat template
    base = BaseModel(**json.loads(metrics_path.read_text())["base_model"])
    print(f"[eval] loading {base.name} and the adapter from {adapter_dir}", flush=True)
    model = PeftModel.from_pretrained(load_model(base, torch.float32), adapter_dir).eval()
    results = {kind: {"base": 0, "finetuned": 0, "n": 0, "chance": round(1 / n, 3)} for kind, n in QUESTION_TYPES.items()}
    chats = [q["chat"] for q in questions]
    answers, losses = {}, {}
    with tqdm(total=4 * len(questions), desc="answering", unit="q") as bar:
        with model.disable_adapter():
            answers["base"] = answer_all(model, tokenizer, questions, bar)
            losses["base"] = heldout_loss(model, tokenizer, chats)
        # The adapter merged into the weights: the same model, without the adapter's per-layer overhead.
        model = model.merge_and_unload()
        answers["finetuned"] = answer_all(model, tokenizer, questions, bar)
        losses["finetuned"] = heldout_loss(model, tokenizer, chats)
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
    results["heldout_loss"] = {name: round(loss, 4) for name, loss in losses.items()}
    results["predictions"] = predictions
    return results


def report_markdown(results: dict, eval_path: Path, seconds: float) -> str:
    lines = ["# ben-lab evaluation", "",
             f"Held-out questions from `{eval_path}` (experiments whose seeds never appear in training). Each model "
             "writes its own reasoning up to \"Answer:\", then each candidate answer is scored by log-likelihood; "
             "accuracy per question type. Every reasoning and pick is in `predictions.json`.", "",
             "| question type | base | fine-tuned | chance | n |", "| --- | --- | --- | --- | --- |"]
    for kind in QUESTION_TYPES:
        r = results[kind]
        if r["n"]:
            lines.append(f"| {kind} | {r['base']:.1%} | {r['finetuned']:.1%} | {r['chance']:.1%} | {r['n']} |")
    loss = results["heldout_loss"]
    lines += ["", f"Held-out loss per answer token: base {loss['base']:.3f}, fine-tuned {loss['finetuned']:.3f}.", "",
              f"Evaluated in {seconds:.0f} s. Plots: `accuracy.png`, `lab_phases.png`.", ""]
    return "\n".join(lines)


def plot_accuracy(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = [k for k in QUESTION_TYPES if results[k]["n"]]
    x = np.arange(len(kinds))
    fig, ax = plt.subplots(figsize=(7, 4))
    for offset, name in ((-0.2, "base"), (0.2, "finetuned")):
        ax.bar(x + offset, [results[k][name] for k in kinds], 0.4, label=name.replace("finetuned", "fine-tuned"))
    ax.scatter(x, [results[k]["chance"] for k in kinds], color="black", marker="_", s=800, label="chance", zorder=3)
    ax.set_xticks(x, [k.replace("_", " ") for k in kinds])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy on held-out questions")
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
    parser.add_argument("--limit", type=int, default=None, help="score only the first N questions")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.eval_data.is_file():
        raise BenLabError(f"{args.eval_data} not found; create it with generate_lab_training_data.py --start-lab")
    started = time.perf_counter()
    results = evaluate(args.adapter_dir, args.eval_data, args.limit)
    seconds = time.perf_counter() - started
    args.out_dir.mkdir(parents=True, exist_ok=True)
    predictions = results.pop("predictions")
    atomic_write(args.out_dir / "report.json", json.dumps(results, indent=2))
    atomic_write(args.out_dir / "predictions.json", json.dumps(predictions, indent=1))
    atomic_write(args.out_dir / "report.md", report_markdown(results, args.eval_data, seconds))
    plot_accuracy(results, args.out_dir / "accuracy.png")
    plot_phases(args.eval_data, args.out_dir / "lab_phases.png")
    print(report_markdown(results, args.eval_data, seconds))
    return 0
