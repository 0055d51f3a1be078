"""Training throughput on a GPU at a real model's shape, with random weights (nothing is downloaded): tokens/s,
model FLOPs utilisation and peak memory of finetune_ben_lab.py's LoRA step (answer-only loss with logits only where
a label is, LoRA on the default target modules, AdamW on the LoRA weights, bf16 autocast) for growing batches.

FLOPs are counted, not estimated: torch.utils.flop_counter counts every matmul and attention FLOP of one step
(forward and backward, so a LoRA step's frozen weights cost no weight gradients). The peak is measured on the same
GPU with bf16 products of 8192 x 8192 x 8192 for at least a second. MFU = counted FLOPs per second / that peak.

Usage: python -m benchmarks.bench_train_gpu [--shape llama-3.2-1b] [--seq-len 1024] [--batch-sizes 4 8 16 32]
"""

import argparse
import json
import time

from benchmarks.matmul_peak import matmul_peak_tflops, sync

SHAPES = {  # the configurations' numbers (config.json of each model); weights are random
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                         rope_theta=500000.0, tie_word_embeddings=True, head_dim=64),
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, tie_word_embeddings=True, head_dim=64),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, head_dim=16),
}
CASTS = {"skip": "not cast (autocast picks the product's dtype)", "peft": "cast to fp32 by PEFT, then back to bf16"}
ANSWER_SHARE = 0.25  # the last quarter of each sequence carries labels, like a lab sample's answer


def make_model(shape: str, device: str, peft_input_casts: bool = False):
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from benlab.train import TrainConfig, lora_config, skip_lora_input_casts

    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], attn_implementation="sdpa")
    model = LlamaForCausalLM(config).to(device=device, dtype=torch.bfloat16)
    model = get_peft_model(model, lora_config(TrainConfig(), model))
    if not peft_input_casts:  # as finetune_ben_lab.py trains under autocast
        skip_lora_input_casts(model)
    return model, config


def batch_of(batch_size: int, seq_len: int, vocab: int, device: str) -> dict:
    import torch

    ids = torch.randint(0, vocab, (batch_size, seq_len), device=device)
    labels = torch.full_like(ids, -100)
    answer_from = int(seq_len * (1 - ANSWER_SHARE))
    labels[:, answer_from:] = ids[:, answer_from:]
    return {"input_ids": ids, "labels": labels}


def step(model, optimizer, batch: dict, device: str) -> None:
    import torch

    from benlab.train import answer_only_loss

    with torch.autocast(device, dtype=torch.bfloat16):
        loss = answer_only_loss(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def flops_per_sequence(model, optimizer, batch: dict, device: str) -> int:
    """FLOPs of one step on one sequence, counted with eager attention: torch's counter has no formula for fused
    attention with grouped KV heads, and eager attention does the same products (it also counts the causal mask's
    zeros, as the counter does for fused attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    inner = model.get_base_model()
    inner.set_attn_implementation("eager")
    try:
        with FlopCounterMode(display=False) as counter:
            step(model, optimizer, {k: v[:1] for k, v in batch.items()}, device)
    finally:
        inner.set_attn_implementation("sdpa")
    return counter.get_total_flops()


def measure(model, optimizer, batch: dict, steps: int, device: str) -> tuple[float, float]:
    """(seconds per step, FLOPs per step) of the training step."""
    step(model, optimizer, batch, device)  # warm-up
    flops = flops_per_sequence(model, optimizer, batch, device) * len(batch["input_ids"])
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(model, optimizer, batch, device)
    sync(device)
    return (time.perf_counter() - start) / steps, flops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_train_gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per batch size (default %(default)s)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu only checks that the benchmark runs (use --shape tiny); the figures are the GPU's")
    parser.add_argument("--lora-input-casts", choices=sorted(CASTS), nargs="+", default=["skip"],
                        help="skip: as finetune_ben_lab.py trains (default); peft: PEFT's own cast of every LoRA input "
                             "to the fp32 adapter weights (the recipe before); give both to compare them side by side")
    args = parser.parse_args(argv)

    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; this benchmark measures a GPU (bench_train.py measures the CPU)")
        return 2
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = matmul_peak_tflops(device, "bfloat16", 8192 if device == "cuda" else 512)
    print(f"{name}: measured bf16 peak {peak:.1f} TFLOP/s (square bf16 products, >= 1 s)", flush=True)
    rows = []
    for casts in args.lora_input_casts:
        model, config = make_model(args.shape, device, peft_input_casts=casts == "peft")
        trainable, total = model.get_nb_trainable_parameters()
        print(f"{args.shape}: {total / 1e9:.2f} B parameters, {trainable / 1e6:.1f} M trainable (LoRA); LoRA inputs: "
              f"{CASTS[casts]}", flush=True)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        for batch_size in args.batch_sizes:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                seconds, flops = measure(model, optimizer, batch_of(batch_size, args.seq_len, config.vocab_size, device),
                                         args.steps, device)
            except torch.OutOfMemoryError:
                print(f"batch {batch_size} x {args.seq_len}: out of memory; stopping here", flush=True)
                break
            tokens = batch_size * args.seq_len
            row = {"gpu": name, "shape": args.shape, "lora_input_casts": casts, "batch": batch_size,
                   "seq_len": args.seq_len, "tokens_per_second": round(tokens / seconds), "step_seconds": round(seconds, 4),
                   "tflops_per_step": round(flops / 1e12, 2), "achieved_tflops": round(flops / seconds / 1e12, 1),
                   "mfu": round(flops / seconds / 1e12 / peak, 3),
                   "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda" else None,
                   "bf16_peak_tflops": round(peak)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model, optimizer
    if rows:
        best = max(rows, key=lambda r: r["tokens_per_second"])
        print(f"best: batch {best['batch']} x {best['seq_len']}, LoRA inputs {best['lora_input_casts']}: {best['tokens_per_second']:,} tokens/s, "
              f"MFU {best['mfu']:.1%} of the measured bf16 peak, peak memory {best['peak_memory_gb']} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
