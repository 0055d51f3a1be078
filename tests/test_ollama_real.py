"""Against a real Ollama server (0.5.4, ../shared/ollama-cpu, made to run on a CPU): a model created from the
Modelfile ben-lab writes answers /api/chat, and chat_with_lab.py completes a session through it. Skipped, with the
reason, where ../shared/ollama-cpu is absent."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from benlab import export, hf_to_gguf, ollama
from benlab.lab_server import free_port
from benlab.prompts import SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parent.parent
OLLAMA_CPU = ROOT.parent / "shared" / "ollama-cpu"

pytestmark = pytest.mark.skipif(not (OLLAMA_CPU / "setup.sh").is_file(),
                                reason=f"no real Ollama here: {OLLAMA_CPU} is absent")


@pytest.fixture(scope="module")
def real_ollama(tmp_path_factory):
    """`ollama serve` on a free port with its own model store; yields the environment that reaches it."""
    subprocess.run([str(OLLAMA_CPU / "setup.sh")], check=True, capture_output=True, timeout=900)
    home = tmp_path_factory.mktemp("ollama-home")
    env = {**os.environ, "PATH": f"{OLLAMA_CPU / 'bin'}:{os.environ['PATH']}", "OLLAMA_HOST": f"127.0.0.1:{free_port()}",
           "OLLAMA_MODELS": str(home / "models"),
           "BENLAB_OLLAMA_CPU_HOME": os.environ.get("BENLAB_OLLAMA_CPU_HOME", str(Path.home() / ".cache/benlab-ollama-cpu")),
           "HOME": str(home)}
    # OLLAMA_DEBUG makes the server log each prompt it renders: how a test sees which system prompt was used.
    env["OLLAMA_DEBUG"] = "1"
    log = (home / "serve.log").open("w")
    server = subprocess.Popen(["ollama", "serve"], env=env, stdout=log, stderr=log)
    env["SERVE_LOG"] = str(home / "serve.log")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://{env['OLLAMA_HOST']}/api/version", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("ollama serve did not start")
                time.sleep(0.2)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def tiny_model_in_ollama(real_ollama, tiny_llama, tmp_path_factory):
    """The tiny llama as a GGUF, registered as ben-lab from the Modelfile export_ben_lab.py writes."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("ollama-model")
    hf_to_gguf.convert_hf_model(tiny_llama, folder / "ben-lab.gguf", "f32")
    template = AutoTokenizer.from_pretrained(tiny_llama).chat_template
    (folder / "Modelfile").write_text(ollama.modelfile("./ben-lab.gguf", template))
    created = subprocess.run(["ollama", "create", "ben-lab", "-f", "Modelfile"], cwd=folder, env=real_ollama,
                             capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stderr
    return real_ollama


def test_the_modelfile_model_is_listed_and_chats(tiny_model_in_ollama):
    env = tiny_model_in_ollama
    listed = subprocess.run(["ollama", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "ben-lab" in listed.stdout
    reply = requests.post(f"http://{env['OLLAMA_HOST']}/api/chat", timeout=300, json={
        "model": "ben-lab", "messages": [{"role": "user", "content": "Which phase?"}], "stream": False,
        "options": {"num_predict": 8}}).json()
    assert reply["done"] and reply["eval_count"] >= 1


def test_a_system_message_replaces_the_modelfiles_system_prompt(tiny_model_in_ollama):
    env = tiny_model_in_ollama

    def rendered_prompt(messages):
        before = Path(env["SERVE_LOG"]).read_text(errors="replace")
        reply = requests.post(f"http://{env['OLLAMA_HOST']}/api/chat", timeout=300, json={
            "model": "ben-lab", "messages": messages, "stream": False, "options": {"num_predict": 2}}).json()
        assert reply.get("done"), reply
        return Path(env["SERVE_LOG"]).read_text(errors="replace")[len(before):]

    plain = rendered_prompt([{"role": "user", "content": "Which phase?"}])
    assert SYSTEM_PROMPT in plain  # the Modelfile's SYSTEM
    own = rendered_prompt([{"role": "system", "content": "You are a terse lab bot."},
                           {"role": "user", "content": "Which phase?"}])
    assert "You are a terse lab bot." in own and SYSTEM_PROMPT not in own


def test_chat_with_lab_completes_a_session_through_ollama(tiny_model_in_ollama, lab_url):
    run = subprocess.run([sys.executable, str(ROOT / "chat_with_lab.py"), "--backend", "ollama", "--once",
                          "Run the cluster state, 8 qubits.", "--json", "--api-url", lab_url],
                         env=tiny_model_in_ollama, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    exchange = json.loads(run.stdout)
    assert exchange["backend"].startswith("Ollama model ben-lab") and exchange["turns"][0]["replies"]


def test_auto_mode_follows_the_real_version_and_an_adapter_model_chats(real_ollama, tiny_llama, lab_data, tmp_path,
                                                                        monkeypatch):
    from transformers import AutoTokenizer

    from benlab import train
    from benlab.common import run_main

    monkeypatch.setenv("PATH", real_ollama["PATH"])
    monkeypatch.setenv("BENLAB_OLLAMA_CPU_HOME", real_ollama["BENLAB_OLLAMA_CPU_HOME"])
    found = ollama.find_ollama()
    assert found.version == (0, 5, 4)  # "ollama version is 0.5.4-ipexllm-20250407"
    assert ollama.choose_mode("auto", found) == "adapter"
    lora = tmp_path / "lora"
    assert run_main(train.main, ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(lora),
                                 "--max-steps", "2", "--general-replay", "0", "--max-seq-len", "256"]) == 0
    hf_to_gguf.convert_hf_model(tiny_llama, tmp_path / "base.gguf", "f32")
    export.write_adapter_gguf(lora, tmp_path / "adapter.gguf", "f32", tmp_path / "base.gguf")
    template = AutoTokenizer.from_pretrained(tiny_llama).chat_template
    (tmp_path / "Modelfile").write_text(ollama.modelfile("./base.gguf", template, adapter="./adapter.gguf"))
    created = subprocess.run(["ollama", "create", "ben-lab-adapter", "-f", "Modelfile"], cwd=tmp_path, env=real_ollama,
                             capture_output=True, text=True, timeout=300)
    assert created.returncode == 0, created.stderr
    reply = requests.post(f"http://{real_ollama['OLLAMA_HOST']}/api/chat", timeout=300, json={
        "model": "ben-lab-adapter", "messages": [{"role": "user", "content": "TRI?"}], "stream": False,
        "options": {"num_predict": 4}}).json()
    assert reply.get("done"), reply


def test_train_and_install_creates_ben_lab_in_both_modes_and_replaces_it(real_ollama, tiny_llama, tmp_path):
    out = tmp_path / "models"
    env = {**real_ollama, "JARVIS_LAB_URL": f"http://127.0.0.1:{free_port()}"}

    def install(mode, *extra):
        run = subprocess.run([str(ROOT / "train_and_install.sh"), "--quick", "--base-model", str(tiny_llama),
                              "--out-dir", str(out), "--skip-eval", "--ollama-mode", mode, *extra],
                             env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        modelfile = subprocess.run(["ollama", "show", "ben-lab", "--modelfile"], env=env, capture_output=True,
                                   text=True, timeout=60).stdout
        return run.stdout, modelfile

    said, modelfile = install("adapter")
    assert "[ollama] Modelfile (adapter mode)" in said and "[ollama] created: ollama run ben-lab" in said
    assert "check passed" in said or "warning: check failed" in said  # the random tiny model's answer is judged
    assert "ADAPTER" in modelfile
    assert "ben-lab" in subprocess.run(["ollama", "list"], env=env, capture_output=True, text=True, timeout=60).stdout
    said, modelfile = install("merged", "--from-step", "3", "--force")  # a re-run replaces the model
    assert "[ollama] Modelfile (merged mode)" in said and "ADAPTER" not in modelfile
    reply = requests.post(f"http://{env['OLLAMA_HOST']}/api/chat", timeout=300, json={
        "model": "ben-lab", "messages": [{"role": "user", "content": "Which phase?"}], "stream": False,
        "options": {"num_predict": 4}}).json()
    assert reply.get("done"), reply


def test_a_corrupt_adapter_is_found_by_loading_it_once(real_ollama, tiny_llama, lab_data, tmp_path, monkeypatch, capsys):
    from benlab import deploy, train
    from benlab.common import run_main

    for key in ("PATH", "OLLAMA_HOST", "OLLAMA_MODELS", "BENLAB_OLLAMA_CPU_HOME", "HOME"):
        monkeypatch.setenv(key, real_ollama[key])
    lora, out = tmp_path / "lora", tmp_path / "out"
    assert run_main(train.main, ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(lora),
                                 "--max-steps", "1", "--general-replay", "0", "--max-seq-len", "256"]) == 0
    hf_to_gguf.convert_hf_model(tiny_llama, tmp_path / "base.gguf", "f32")
    common = ["--adapter-dir", str(lora), "--out-dir", str(out), "--base-gguf", str(tmp_path / "base.gguf"),
              "--skip-llama-cpp", "--model-name", "ben-lab-corrupt"]
    assert run_main(deploy.main, common + ["--step", "gguf"]) == 0
    adapter = out / "ben-lab-adapter.gguf"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])  # a copy cut short
    capsys.readouterr()
    assert run_main(deploy.main, common + ["--step", "install", "--ollama-mode", "adapter"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ben-lab-corrupt" in err[0], err


def test_two_adapters_combined_install_and_answer_as_both_at_their_weights(real_ollama, tiny_llama, lab_data, tmp_path,
                                                                         monkeypatch, capsys):
    """export_ben_lab.py --adapter-dir A --adapter-dir B --weights 0.7 0.3 --ollama-mode adapter writes one ADAPTER
    line, the combined adapter, and this Ollama creates the model and answers (greedy) exactly as with two ADAPTER
    lines, A at 0.7 and B at 0.3 each a file of its own, which this build (Intel's 0.5.4) takes and applies both of;
    and not as with A alone. The one combined line also works where Ollama applies a single adapter."""
    from benlab import deploy, train
    from benlab.common import run_main
    from tests.conftest import strengthen

    for key in ("PATH", "OLLAMA_HOST", "OLLAMA_MODELS", "BENLAB_OLLAMA_CPU_HOME", "HOME"):
        monkeypatch.setenv(key, real_ollama[key])
    adapters = []
    for name, rank in (("a", "16"), ("b", "8")):
        assert run_main(train.main, ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir",
                                     str(tmp_path / f"{name}-trained"), "--max-steps", "1", "--general-replay", "0",
                                     "--max-seq-len", "256", "--lora-r", rank, "--seed", rank]) == 0
        adapters.append(strengthen(tmp_path / f"{name}-trained", tiny_llama, tmp_path / name))
    hf_to_gguf.convert_hf_model(tiny_llama, tmp_path / "base.gguf", "f32")
    out = tmp_path / "out"
    capsys.readouterr()
    argv = ["--adapter-dir", str(adapters[0]), "--adapter-dir", str(adapters[1]), "--weights", "0.7", "0.3",
            "--base-gguf", str(tmp_path / "base.gguf"), "--out-dir", str(out), "--ollama-mode", "adapter",
            "--skip-llama-cpp", "--model-name", "ben-lab-two"]
    assert run_main(deploy.main, argv) == 0
    said = capsys.readouterr().out
    assert "combining 2 adapter(s)" in said and "[ollama] created: ollama run ben-lab-two" in said
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.count("ADAPTER ") == 1
    for name, adapter, weight in (("a", adapters[0], 0.7), ("b", adapters[1], 0.3)):
        export.write_adapter_gguf(export.load_adapters([adapter], [weight]), out / f"{name}.gguf", "f32",
                                  tmp_path / "base.gguf")
    for model, lines in (("ben-lab-a", "ADAPTER ./a.gguf"), ("ben-lab-two-lines", "ADAPTER ./a.gguf\nADAPTER ./b.gguf")):
        (out / f"Modelfile.{model}").write_text(modelfile.replace("ADAPTER ./ben-lab-adapter.gguf", lines))
        created = subprocess.run(["ollama", "create", model, "-f", f"Modelfile.{model}"], cwd=out, env=real_ollama,
                                 capture_output=True, text=True, timeout=300)
        assert created.returncode == 0, created.stderr

    def greedy(model):
        reply = requests.post(f"http://{real_ollama['OLLAMA_HOST']}/api/chat", timeout=300, json={
            "model": model, "messages": [{"role": "user", "content": "Which phase has string order?"}],
            "stream": False, "options": {"num_predict": 12, "temperature": 0, "seed": 0}}).json()
        assert reply.get("done"), reply
        return reply["message"]["content"]

    combined, first_alone, two_lines = greedy("ben-lab-two"), greedy("ben-lab-a"), greedy("ben-lab-two-lines")
    assert combined != first_alone  # B at 0.3 changes the answer
    assert two_lines == combined
