"""Training throughput, side by side on the same model, data and CPU: our recipe (chat template, answer-only
loss, length-grouped dynamic padding, logits only where the loss needs them) against the predecessor's (every
sample padded to 1024 tokens, labels = input ids, full logits), each in fp32 and in bf16 as finetune_ben_lab.py
trains it (bf16 weights under autocast, LoRA weights and AdamW fp32). Also: the held-out loss after those steps
(answer tokens of the first held-out samples), model FLOPs utilisation against the matmul peak measured for the
dtype used (fp32 and bf16 peaks, each from >= 1 s of 2048^3 products), and peak RSS (each run is its own process).
`--lora-layers top-half all` compares LoRA on the top half of the decoder layers with LoRA on all (the default).

Usage (from the repository root):
    .venv/bin/python -m benchmarks.bench_train [--samples 12] [--rounds 2] [--precision fp32 bf16] [--recipes ours predecessor]
                                               [--lora-layers top-half all]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.matmul_peak import matmul_peak_tflops

PAD_TO = 1024
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


HELD_OUT = 16  # held-out samples whose answer loss is compared after training


def run(recipe: str, precision: str, lora_layers: str, samples: int, base_model: str | None, batch_size: int) -> dict:
    import contextlib

    import torch
    from peft import get_peft_model

    from benlab import models, train

    base = models.resolve(base_model)
    tokenizer = models.load_tokenizer(base)
    model = models.load_model(base, torch.float32 if precision == "fp32" else torch.bfloat16)
    models.ensure_chat_template(tokenizer, model.config.model_type)
    config = train.TrainConfig(lora_layers=lora_layers)
    torch.manual_seed(0)  # the same LoRA initialisation in every run
    model = get_peft_model(model, train.lora_config(config, model))
    autocast = contextlib.nullcontext
    if precision == "bf16":  # as finetune_ben_lab.py trains: autocast, LoRA weights fp32, inputs not cast
        train.skip_lora_input_casts(model)
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
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
    # One warm-up pass, not timed, that changes nothing.
    with autocast():
        loss = train.answer_only_loss(model, batches[0]) if recipe == "ours" else model(**batches[0]).loss
    loss.backward()
    optimizer.zero_grad()
    start = time.perf_counter()
    for batch in batches:
        with autocast():
            if recipe == "ours":
                loss = train.answer_only_loss(model, batch)
                kept_positions += batch["labels"].shape[0] * len((batch["labels"][:, 1:] != -100).any(dim=0).nonzero())
            else:
                loss = model(**batch).loss
                kept_positions += batch["input_ids"].numel()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - start
    held_out = [train.encode(c, tokenizer, 1536) for c in train.read_chats("data/lab_eval.jsonl")[:HELD_OUT]]
    with torch.no_grad(), autocast():
        losses = [float(train.answer_only_loss(model, train.pad_batch([row], tokenizer.pad_token_id)))
                  for row in held_out if row is not None]
    processed = sum(b["input_ids"].numel() for b in batches)
    cfg = model.config
    embedding = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for p in model.get_base_model().model.layers.parameters())
    adapted = len(model.peft_config["default"].layers_to_transform or range(cfg.num_hidden_layers))
    # Frozen weights: forward 2 FLOPs per weight per token, backward 2 more (activation gradients only) in the layers
    # from the lowest adapted one up (backpropagation stops there).
    flops = (2 + 2 * adapted / cfg.num_hidden_layers) * body * processed + 4 * embedding * kept_positions
    return {
        "recipe": recipe,
        "precision": precision,
        "lora_layers": lora_layers,
        "samples": len(rows),
        "useful_tokens": useful,
        "processed_tokens": processed,
        "seconds": round(seconds, 2),
        "useful_tokens_per_second": round(useful / seconds, 1),
        "model_gflops_per_second": round(flops / seconds / 1e9, 1),
        "held_out_loss": round(sum(losses) / len(losses), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=12, help="samples per round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="turns each run takes; the best counts (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per step (default: finetune_ben_lab.py's)")
    parser.add_argument("--base-model", default=None, help="as finetune_ben_lab.py (default: the embedded SmolLM2)")
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                        help="training precisions to compare (default: %(default)s)")
    parser.add_argument("--recipes", nargs="+", choices=["ours", "predecessor"], default=["ours", "predecessor"],
                        help="recipes to compare (default: %(default)s)")
    parser.add_argument("--lora-layers", nargs="+", default=None,
                        help="decoder layers LoRA adapts, as finetune_ben_lab.py's --lora-layers; several compare "
                        "(e.g. top-half all; default: finetune_ben_lab.py's)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from benlab.train import TrainConfig

    args.batch_size = args.batch_size or TrainConfig().batch_size
    args.lora_layers = args.lora_layers or [TrainConfig().lora_layers]
    if args.child:
        print(json.dumps(run(*args.child, args.samples, args.base_model, args.batch_size)))
        return
    missing = [path for path in ("data/lab_instructions.jsonl", "data/lab_eval.jsonl") if not Path(path).is_file()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not found: this benchmark trains on the default data; create it with "
                 "`.venv/bin/python generate_lab_training_data.py --start-lab` (or ./train_and_install.sh)")
    peaks = {precision: 1000 * matmul_peak_tflops("cpu", DTYPES[precision], 2048) for precision in ("fp32", "bf16")}
    print(f"matmul peaks on this machine (2048^3 products for >= 1 s, torch): fp32 {peaks['fp32']:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.1f} GFLOP/s; each run's MFU is against the peak of its own precision", flush=True)
    # The runs take turns, and each keeps its best round: this VM's speed drifts by +-30% from minute to minute.
    results = {}
    for round_number in range(1, args.rounds + 1):
        for recipe in reversed(args.recipes):
            for precision, layers in ((p, layers) for p in args.precision for layers in args.lora_layers):
                command = [sys.executable, "-m", "benchmarks.bench_train", "--child", recipe, precision, layers,
                           "--samples", str(args.samples), "--batch-size", str(args.batch_size)]
                command += ["--base-model", args.base_model] if args.base_model else []
                child = subprocess.run(command, capture_output=True, text=True)
                if child.returncode:
                    last = (child.stderr.strip().splitlines() or ["no output"])[-1]
                    sys.exit(f"error: the {recipe} {precision} run (LoRA on {layers} layers) failed: {last}")
                out = child.stdout
                r = json.loads(out.strip().splitlines()[-1])
                r["mfu"] = r["model_gflops_per_second"] / peaks[precision]
                print(f"round {round_number} {recipe:11s} {precision} LoRA on {layers} layers "
                      f"{r['useful_tokens_per_second']:7.1f} useful tokens/s "
                      f"({r['processed_tokens']} tokens processed for {r['useful_tokens']} useful, {r['seconds']} s)  "
                      f"{r['model_gflops_per_second']} GFLOP/s = MFU {r['mfu']:.0%}  held-out loss {r['held_out_loss']}  "
                      f"peak RSS {r['peak_rss_mb']} MB", flush=True)
                best = results.get((recipe, precision, layers))
                if best is None or r["useful_tokens_per_second"] > best["useful_tokens_per_second"]:
                    results[(recipe, precision, layers)] = r
    for (recipe, precision, layers), r in results.items():
        print(f"best {recipe:11s} {precision} LoRA on {layers} layers {r['useful_tokens_per_second']:7.1f} useful "
              f"tokens/s, MFU {r['mfu']:.0%}, held-out loss {r['held_out_loss']}, peak RSS {r['peak_rss_mb']} MB")
    first = args.lora_layers[0]
    for recipe, precision, layers in results:
        if layers != first and (recipe, precision, first) in results:
            ours, other = results[(recipe, precision, first)], results[(recipe, precision, layers)]
            print(f"{recipe} {precision}: LoRA on {first} / on {layers} layers in useful tokens/s: "
                  f"{ours['useful_tokens_per_second'] / other['useful_tokens_per_second']:.2f}x; held-out loss "
                  f"{ours['held_out_loss']} vs {other['held_out_loss']}")
    results = {(recipe, precision): r for (recipe, precision, layers), r in results.items() if layers == first}
    for precision in args.precision:
        if {("ours", precision), ("predecessor", precision)} <= set(results):
            speedup = (results[("ours", precision)]["useful_tokens_per_second"]
                       / results[("predecessor", precision)]["useful_tokens_per_second"])
            print(f"{precision}: our recipe / the predecessor's in useful tokens/s: {speedup:.1f}x")
    for recipe in args.recipes:
        if {(recipe, "fp32"), (recipe, "bf16")} <= set(results):
            fp32, bf16 = results[(recipe, "fp32")], results[(recipe, "bf16")]
            print(f"{recipe}: bf16 / fp32 in useful tokens/s: {bf16['useful_tokens_per_second'] / fp32['useful_tokens_per_second']:.2f}x; "
                  f"held-out loss {bf16['held_out_loss']} vs {fp32['held_out_loss']} "
                  f"({100 * (bf16['held_out_loss'] / fp32['held_out_loss'] - 1):+.1f}%)")


if __name__ == "__main__":
    main()
