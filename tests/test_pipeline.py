"""The whole pipeline at tiny scale, as a user runs it: ./train_and_install.sh from another directory, into a path
with a space, on a tiny llama built in the test: lab -> data -> LoRA -> GGUF -> llama.cpp answer."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from benlab.lab_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def run(args, cwd, env):
    return subprocess.run([str(ROOT / "train_and_install.sh"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_train_and_install_end_to_end(tiny_llama, tmp_path):
    out = tmp_path / "my models"
    # no Ollama on the path; no lab running at JARVIS_LAB_URL, so the script starts one and stops it
    env = {**os.environ, "PATH": "/usr/bin:/bin", "JARVIS_LAB_URL": f"http://127.0.0.1:{free_port()}"}
    args = ["--quick", "--base-model", str(tiny_llama), "--out-dir", str(out), "--skip-eval"]
    result = run(args, tmp_path, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for line in ("[lab] started a local lab", "[lab] stopped the local lab this run started", "[1/4] data: done", "[2/4] fine-tune: done", "[3/4] GGUF: done", "[4/4] Ollama: done",
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


def test_an_unwritable_out_dir_is_one_line_before_anything_runs(tmp_path):
    result = run(["--out-dir", "/proc/benlab-cannot-write-here"], tmp_path, os.environ)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == ("error: --out-dir /proc/benlab-cannot-write-here cannot be written; pick a folder "
                                     "you can write to")


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_interrupt_stops_the_lab_the_script_started(tmp_path, how):
    env = {**os.environ, "JARVIS_LAB_URL": f"http://127.0.0.1:{free_port()}"}
    script = subprocess.Popen([str(ROOT / "train_and_install.sh"), "--quick", "--out-dir", str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    started = ""
    for line in script.stdout:  # read until the lab is up, then interrupt
        if line.startswith("[lab] started a local lab at "):
            started = line.split(" at ")[1].split(";")[0]
            break
    assert started, script.stderr.read()
    if how == "ctrl-c":  # the terminal sends SIGINT to the whole process group
        os.killpg(script.pid, signal.SIGINT)
    else:  # only the script is killed: the lab it started in the background gets no signal but the trap's
        os.kill(script.pid, signal.SIGTERM)
    rest, err = script.communicate(timeout=120)
    # 130 as a rule. Known race (#17): the terminal's Ctrl-C also reaches the lab, and when it lands between two
    # commands the data step finds the lab gone and exits 2 first; the lab must be stopped either way.
    assert script.returncode == 130 or (how == "ctrl-c" and script.returncode == 2 and "lab" in err), err
    assert "[lab] stopped the local lab this run started" in rest
    assert "interrupted" in err or "lab" in err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{started}/health", timeout=2)


def test_lab_check_used_by_the_script(lab_url):
    from benlab import lab_client

    assert lab_client.main([lab_url]) == 0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    start = time.monotonic()  # a lab process that died is not waited for
    assert lab_client.main([f"http://127.0.0.1:{free_port()}", "--wait", "30", "--pid", str(gone.pid)]) == 1
    assert time.monotonic() - start < 5
