"""The whole pipeline at tiny scale, as a user runs it: ./train_and_install.sh from another directory, into a path
with a space, on a tiny llama built in the test: lab -> data -> LoRA -> GGUF -> llama.cpp answer."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args, cwd, env):
    return subprocess.run([str(ROOT / "train_and_install.sh"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_train_and_install_end_to_end(tiny_llama, tmp_path):
    out = tmp_path / "my models"
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no Ollama on the path
    args = ["--quick", "--base-model", str(tiny_llama), "--out-dir", str(out), "--skip-eval"]
    result = run(args, tmp_path, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for line in ("[1/4] data: done", "[2/4] fine-tune: done", "[3/4] GGUF: done", "[4/4] Ollama: done",
                 "ollama create ben-lab -f Modelfile", "[llama.cpp]", "ben-lab is built"):
        assert line in result.stdout, line
    for artifact in ("data/lab_instructions.jsonl", "data/lab_eval.jsonl", "ben-lab-lora/adapter_model.safetensors",
                     "ben-lab-adapter.gguf", "ben-lab.gguf", "Modelfile"):
        assert (out / artifact).exists(), artifact
    again = run(args, tmp_path, env)  # a re-run reuses every step's output
    assert again.returncode == 0 and "[2/4] fine-tune: reusing" in again.stdout


def test_unknown_flag_is_one_line(tmp_path):
    result = run(["--frobnicate"], tmp_path, os.environ)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "--frobnicate" in result.stderr
