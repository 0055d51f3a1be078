"""Training throughput, side by side on the same model, data and CPU: our recipe (chat template, answer-only
loss, length-grouped dynamic padding, logits only where the loss needs them) against the predecessor's (every
sample padded to 1024 tokens, labels = input ids, full logits). Also: model FLOPs utilisation against a measured
fp32 matmul peak, and peak RSS of each recipe (each runs in its own process).

Usage (from the repository root): .venv/bin/python -m benchmarks.bench_train [--samples 12] [--rounds 2] [--base-model smollm2]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

PAD_TO = 1024


def matmul_peak_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    start, repeats = time.perf_counter(), 10
    for _ in range(repeats):
        a @ b
    return 2 * 2048**3 * repeats / (time.perf_counter() - start) / 1e9


def run(recipe: str, samples: int, base_model: str | None, batch_size: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from benlab import models, train

    base = models.resolve(base_model)
    tokenizer = models.load_tokenizer(base)
    model = models.load_model(base, torch.float32)
    models.ensure_chat_template(tokenizer, model.config.model_type)
    config = train.TrainConfig()
    model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                                             target_modules=config.target_modules, task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    chats = train.read_chats("data/lab_instructions.jsonl")[:samples]
    rows = [train.encode(c, tokenizer, 512) for c in chats]
    useful = sum(len(r["input_ids"]) for r in rows)
    kept_positions = 0
    if recipe == "ours":
        rows.sort(key=lambda r: r["length"])  # what the length-grouped sampler does, minus the shuffling
        batches = [train.pad_batch(rows[i : i + batch_size], tokenizer.pad_token_id) for i in range(0, len(rows), batch_size)]
    else:
        batches = []
        for i in range(0, len(rows), batch_size):
            ids = torch.full((len(rows[i : i + batch_size]), PAD_TO), tokenizer.pad_token_id)
            for j, r in enumerate(rows[i : i + batch_size]):
                ids[j, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            batches.append({"input_ids": ids, "labels": ids.clone(), "attention_mask": (ids != -1).long()})
    # One warm-up step, not timed.
    warm = batches[0]
    loss = train.answer_only_loss(model, warm) if recipe == "ours" else model(**warm).loss
    loss.backward()
    optimizer.zero_grad()
    start = time.perf_counter()
    for batch in batches:
        if recipe == "ours":
            loss = train.answer_only_loss(model, batch)
            first = int((batch["labels"][:, 1:] != -100).any(dim=0).nonzero()[0])
            kept_positions += batch["labels"].shape[0] * (batch["labels"].shape[1] - first)
        else:
            loss = model(**batch).loss
            kept_positions += batch["input_ids"].numel()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - start
    processed = sum(b["input_ids"].numel() for b in batches)
    cfg = model.config
    embedding = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for p in model.get_base_model().model.layers.parameters())
    # Frozen weights: forward 2 FLOPs per weight per token, backward 2 more (activation gradients only).
    flops = 4 * body * processed + 4 * embedding * kept_positions
    return {
        "recipe": recipe,
        "samples": len(rows),
        "useful_tokens": useful,
        "processed_tokens": processed,
        "seconds": round(seconds, 2),
        "useful_tokens_per_second": round(useful / seconds, 1),
        "model_gflops_per_second": round(flops / seconds / 1e9, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=12, help="samples per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="turns each recipe takes; the best counts (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per step (default: finetune_ben_lab.py's)")
    parser.add_argument("--base-model", default=None, help="as finetune_ben_lab.py (default: the embedded SmolLM2)")
    parser.add_argument("--child", choices=["ours", "predecessor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_size is None:
        from benlab.train import TrainConfig

        args.batch_size = TrainConfig().batch_size
    if args.child:
        print(json.dumps(run(args.child, args.samples, args.base_model, args.batch_size)))
        return
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak on this machine (2048x2048, torch): {peak:.1f} GFLOP/s")
    # The recipes take turns, and each keeps its best round: this VM's speed drifts by +-30% from minute to minute.
    results = {}
    for round_number in range(1, args.rounds + 1):
        for recipe in ("predecessor", "ours"):
            command = [sys.executable, "-m", "benchmarks.bench_train", "--child", recipe, "--samples", str(args.samples),
                       "--batch-size", str(args.batch_size)] + (["--base-model", args.base_model] if args.base_model else [])
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"round {round_number} {recipe:12s} {r['useful_tokens_per_second']:7.1f} useful tokens/s  "
                  f"({r['processed_tokens']} tokens processed for {r['useful_tokens']} useful, {r['seconds']} s)  "
                  f"{r['model_gflops_per_second']} GFLOP/s = MFU {100 * r['model_gflops_per_second'] / peak:.0f}%  "
                  f"peak RSS {r['peak_rss_mb']} MB", flush=True)
            best = results.get(recipe)
            if best is None or r["useful_tokens_per_second"] > best["useful_tokens_per_second"]:
                results[recipe] = r
    for recipe, r in results.items():
        print(f"best {recipe:12s} {r['useful_tokens_per_second']:7.1f} useful tokens/s, MFU "
              f"{100 * r['model_gflops_per_second'] / peak:.0f}%, peak RSS {r['peak_rss_mb']} MB")
    speedup = results["ours"]["useful_tokens_per_second"] / results["predecessor"]["useful_tokens_per_second"]
    print(f"speed-up in useful tokens/s: {speedup:.1f}x")


if __name__ == "__main__":
    main()
