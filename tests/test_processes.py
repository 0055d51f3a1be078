"""`accelerate launch --num_processes 2 finetune_ben_lab.py` on CPU (gloo): the same script, unchanged, trains like
one process with the same effective batch, and writes one adapter and one metrics.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

from transformers import AutoTokenizer

from benlab import train

ROOT = Path(__file__).resolve().parent.parent
STEPS = 4
# Both runs see the same samples in each update and compute in fp32; what differs is the order of floating-point
# sums (one batch of two against two batches of one, all-reduced).
LOSS_TOLERANCE = 1e-4


def equal_length_data(tokenizer, path: Path, count: int = 2 * STEPS) -> None:
    """Distinct samples of one token length: the length-grouped sampler then keeps its seeded shuffle as is, so
    update k holds the same two samples whether one process takes both or two processes take one each."""
    words = ["phase", "drift", "order", "string", "state", "lab", "run", "depth", "bias", "seed", "noise", "chain"]
    chats = [[{"role": "system", "content": "s"}, {"role": "user", "content": f"Name the {a} of the {b}."},
              {"role": "assistant", "content": f"The {a} of the {b} is {c}."}]
             for a in words for b in words for c in words[:3] if a != b]
    by_length: dict[int, list] = {}
    for chat in chats:
        by_length.setdefault(train.encode(chat, tokenizer, 512)["length"], []).append(chat)
    same = max(by_length.values(), key=len)
    assert len(same) >= count
    path.write_text("".join(json.dumps({"messages": chat}) + "\n" for chat in same[:count]))


def finetune(launcher: list[str], tiny_llama, data: Path, out: Path, batch_size: int) -> subprocess.CompletedProcess:
    argv = [str(ROOT / "finetune_ben_lab.py"), "--base-model", str(tiny_llama), "--data", str(data),
            "--output-dir", str(out), "--batch-size", str(batch_size), "--max-steps", str(STEPS), "--lr", "1e-2",
            "--general-replay", "0", "--precision", "fp32", "--save-steps", "100"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores
    return subprocess.run(launcher + argv, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def test_two_processes_train_like_one_with_the_same_effective_batch(tiny_llama, tmp_path):
    data = tmp_path / "equal.jsonl"
    equal_length_data(AutoTokenizer.from_pretrained(tiny_llama), data)
    one = finetune([sys.executable], tiny_llama, data, tmp_path / "one", batch_size=2)
    assert one.returncode == 0, one.stderr[-2000:]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu"]  # torchrun; gloo without a GPU
    two = finetune(accelerate, tiny_llama, data, tmp_path / "two", batch_size=1)
    assert two.returncode == 0, two.stderr[-2000:]

    metrics = {name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two")}
    assert metrics["two"]["processes"] == 2 and metrics["one"]["processes"] == 1
    losses = {name: [h["loss"] for h in m["loss_history"] if "loss" in h] for name, m in metrics.items()}
    assert len(losses["one"]) == len(losses["two"]) == STEPS  # one entry per update, not one per process
    assert losses["one"][0] != losses["one"][-1]  # it trained: the comparison is not between two constant curves
    for a, b in zip(losses["one"], losses["two"]):
        assert abs(a - b) <= LOSS_TOLERANCE * max(1.0, abs(a)), losses
    # the main process alone writes and reports: one adapter, one "[train]" line
    assert sorted(p.name for p in (tmp_path / "two").glob("adapter_model*")) == ["adapter_model.safetensors"]
    assert two.stdout.count("[train] ") == one.stdout.count("[train] "), (one.stdout, two.stdout)
