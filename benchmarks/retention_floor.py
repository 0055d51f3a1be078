"""How many general-knowledge probes a change of the trained adapter's size loses when it means nothing: the noise
floor of the evaluation's general_retention.

The probes (benlab/general.py) are answered greedily, as the evaluation does, by the base model, by the trained
adapter, and by the trained adapter with the rows of every B and the columns of every A permuted at random (one
permutation per seed). A permuted adapter has exactly the trained one's singular values, layer by layer, so it moves
the weights as far, in a direction that encodes nothing. If it loses as many probes as the trained adapter, what
general_retention counts is mostly how far the weights moved, not what was forgotten. Also printed: the probes that
every permuted adapter keeps (the ones a change of that size does not flip) and the trained adapter's retention on
those. A benchmark, not a test: each pass over the 113 probes takes about a minute on 2 CPU cores.

Usage (from the repository root):
  .venv/bin/python -m benchmarks.retention_floor --adapter-dir ben-lab-lora --seeds 1 2 3
"""

import argparse
import json
from pathlib import Path

from benlab.common import BenLabError, run_main


def permute_like(trained: dict, model, generator) -> None:
    """Every LoRA A with its columns (inputs) and every B with its rows (outputs) permuted, from the trained values."""
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_A" in name:
                parameter.copy_(trained[name][:, torch.randperm(parameter.shape[1], generator=generator)])
            elif "lora_B" in name:
                parameter.copy_(trained[name][torch.randperm(parameter.shape[0], generator=generator), :])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="retention_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter-dir", type=Path, default=Path("ben-lab-lora"), help="trained adapter (default %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one permuted adapter per seed")
    parser.add_argument("--out", type=Path, default=None, help="write every answer and verdict here as JSON")
    args = parser.parse_args(argv)
    if not (args.adapter_dir / "adapter_model.safetensors").is_file() or not (args.adapter_dir / "metrics.json").is_file():
        raise BenLabError(f"{args.adapter_dir} holds no trained adapter; train one with finetune_ben_lab.py first")

    import torch
    from peft import PeftModel
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from benlab import skills
    from benlab.generation import generate_replies
    from benlab.models import BaseModel, load_model
    from benlab.train import precision_settings

    precision = precision_settings("auto")[0]  # as the evaluation answers the probes
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = BaseModel(**json.loads((args.adapter_dir / "metrics.json").read_text())["base_model"])
    print(f"loading {base.name} ({precision}, {device}) and the adapter from {args.adapter_dir}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(args.adapter_dir)
    model = PeftModel.from_pretrained(load_model(base, dtype), args.adapter_dir).to(device).eval()
    trained = {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}
    probes = skills.probe_chats()
    answers = {}
    with tqdm(total=(2 + len(args.seeds)) * len(probes), desc="probes", unit="q") as bar:
        with model.disable_adapter():
            answers["base"] = generate_replies(model, tokenizer, probes, skills.PROBE_TOKENS, bar=bar)
        answers["trained"] = generate_replies(model, tokenizer, probes, skills.PROBE_TOKENS, bar=bar)
        for seed in args.seeds:
            permute_like(trained, model, torch.Generator().manual_seed(seed))
            answers[f"permuted {seed}"] = generate_replies(model, tokenizer, probes, skills.PROBE_TOKENS, bar=bar)
    right = {name: {i for i, answer in enumerate(texts) if skills.probe_right(i, answer)} for name, texts in answers.items()}
    base_right = right["base"]
    permuted = [name for name in answers if name.startswith("permuted")]
    stable = set.intersection(base_right, *(right[name] for name in permuted))
    print(f"\n{len(probes)} probes; the base model answers {len(base_right)} right\n")
    print("| adapter | probes right | of the base's right, kept | retention | on the probes no permutation flips |")
    print("| --- | --- | --- | --- | --- |")
    for name in answers:
        if name == "base":
            continue
        kept = right[name] & base_right
        on_stable = "-" if name in permuted else f"{len(right[name] & stable)} of {len(stable)}"
        print(f"| {name} | {len(right[name])} | {len(kept)} of {len(base_right)} | {len(kept) / len(base_right):.1%} | "
              f"{on_stable} |")
    if args.out:
        args.out.write_text(json.dumps({"answers": answers, "right": {k: sorted(v) for k, v in right.items()},
                                        "stable": sorted(stable)}, indent=1))
        print(f"\nanswers in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
