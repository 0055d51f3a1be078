"""Several fine-tuning settings trained and evaluated one after another on the same data: how the defaults of
finetune_ben_lab.py were chosen. Each setting is TrainConfig fields over the defaults; each is trained from scratch
and scored by evaluate_ben_lab.py's evaluation (without the llama.cpp lab sessions, which need an exported GGUF). The
base model's answers are computed once and reused (benlab/eval_cache.py). Prints one row per setting and writes
OUT/sweep.json. A benchmark, not a test: on 2 CPU cores a setting takes about as long as the default run, on a GPU
about a minute.

Usage (from the repository root):
  .venv/bin/python -m benchmarks.sweep_training --out-dir /tmp/sweep \\
      --settings '{"default": {}, "lr 5e-4": {"lr": 5e-4}, "attention only": {"target_modules": ["q_proj", "v_proj"]}}'
"""

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

from benlab.common import BenLabError, run_main

COLUMNS = ("phase_identification", "tri_comparison", "drift_class", "tool_call", "result_phase", "result_tri_compare",
           "result_drift", "quoted_values", "invented_measurements", "concepts", "general_retention")


def parse_settings(text: str) -> dict[str, dict]:
    from benlab.train import TrainConfig

    try:
        settings = json.loads(text)
    except ValueError as error:
        raise BenLabError(f"--settings is not JSON ({error}); give an object of name -> {{field: value}}") from None
    known = {f.name for f in fields(TrainConfig)}
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise BenLabError("--settings must be a JSON object of name -> {TrainConfig field: value}")
    for name, overrides in settings.items():
        unknown = set(overrides) - known
        if unknown:
            raise BenLabError(f"--settings {name!r}: unknown field(s) {', '.join(sorted(unknown))}; "
                              f"the fields are {', '.join(sorted(known))}")
    return settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sweep_training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", required=True, help="JSON object: setting name -> TrainConfig fields")
    parser.add_argument("--base-model", default=None, help="as finetune_ben_lab.py (default: its default)")
    parser.add_argument("--data", nargs="+", default=None, help="training files (default: finetune_ben_lab.py's)")
    parser.add_argument("--eval-data", type=Path, default=Path("data/lab_eval.jsonl"), help="held-out file")
    parser.add_argument("--limit", type=int, default=None, help="questions per kind (default: all)")
    parser.add_argument("--out-dir", type=Path, default=Path("sweep"), help="adapters and sweep.json go here")
    args = parser.parse_args(argv)

    from benlab.evaluate import evaluate
    from benlab.train import TrainConfig, train

    settings = parse_settings(args.settings)
    rows = []
    for name, overrides in settings.items():
        output = args.out_dir / "".join(c if c.isalnum() else "-" for c in name)
        config = TrainConfig(**{"output_dir": str(output), "base_model": args.base_model,
                                **({"data": args.data} if args.data else {}), **overrides})
        print(f"== {name}: {overrides}", flush=True)
        metrics = train(config)
        started = time.perf_counter()
        results = evaluate(output, args.eval_data, args.limit)
        results.pop("predictions")
        row = {"setting": name, "overrides": overrides, "train_seconds": metrics["train_seconds"],
               "tokens_per_second": metrics["tokens_per_second"], "eval_seconds": round(time.perf_counter() - started, 1),
               "heldout_loss": results["heldout_loss"]["finetuned"],
               **{key: results[key]["finetuned"] for key in COLUMNS if key in results},
               "base": {key: results[key]["base"] for key in COLUMNS if key in results}}
        rows.append(row)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "sweep.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(row), flush=True)
    print("\n| setting | train s | loss | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (3 + len(COLUMNS)) + "|")
    for row in rows:
        cells = [f"{row[key]:.2f}" if isinstance(row.get(key), float) else "-" for key in COLUMNS]
        print(f"| {row['setting']} | {row['train_seconds']:.0f} | {row['heldout_loss']:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
