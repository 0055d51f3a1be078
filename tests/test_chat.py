"""chat_with_lab.py: the TOOL loop against a live lab, its error paths, and the command line (--once, --questions,
--json, --system), with a scripted model, a stand-in Ollama server, and llama.cpp on a tiny GGUF."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI

from benlab import chat, hf_to_gguf, tools
from benlab.lab_client import LabClient
from benlab.lab_server import free_port
from tests.conftest import serve

ROOT = Path(__file__).resolve().parent.parent
RUN = tools.tool_line("run_phase", {"phase_type": "spt_cluster", "system_size": 8, "depth": 4, "seed": 3})


def scripted(*replies):
    """A model that answers with these replies in turn and records what it was sent."""
    seen = []

    def reply(messages):
        seen.append([dict(m) for m in messages])
        return replies[len(seen) - 1]

    reply.seen = seen
    return reply


def test_a_tool_call_runs_on_the_lab_and_the_result_goes_back(lab_url):
    lab = LabClient(lab_url)
    model = scripted(RUN, "Phase: spt_cluster.")
    messages = [{"role": "system", "content": tools.LAB_LOOP_SYSTEM_PROMPT}]
    turn = chat.ask("Run the cluster state, 8 qubits, depth 4, seed 3.", messages, model, lab)
    direct = requests.post(f"{lab_url}/run_phase_experiment",
                           json={"phase_type": "spt_cluster", "system_size": 8, "depth": 4, "seed": 3}).json()
    assert turn.answer == "Phase: spt_cluster." and turn.calls[0]["ok"] and turn.calls[0]["result"] == direct
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[3]["content"] == "Experiment result: " + json.dumps(direct)
    assert model.seen[1] == messages[:4]  # the model saw the result before its explanation


@pytest.mark.parametrize("bad, problem", [
    ("TOOL: {oops", "not valid JSON"),
    ('TOOL: {"name": "teleport", "args": {}}', "unknown tool"),
    (tools.tool_line("run_phase", {"phase_type": "spt_cluster", "system_size": 40}), "HTTP 422"),
    (tools.tool_line("run_phase", {"phase_type": "toric_code"}), "HTTP 422"),
])
def test_a_bad_call_goes_back_to_the_model_which_can_correct_itself(lab_url, bad, problem):
    said = []
    model = scripted(bad, RUN, "Phase: spt_cluster.")
    messages = [{"role": "system", "content": "s"}]
    turn = chat.ask("Run it.", messages, model, LabClient(lab_url), said.append)
    assert not turn.calls[0]["ok"] and problem in turn.calls[0]["error"] and turn.calls[1]["ok"]
    assert messages[3]["content"].startswith('Experiment result: {"error": ') and problem in messages[3]["content"]
    assert any(problem in line for line in said) and turn.answer == "Phase: spt_cluster."


def test_tool_calls_stop_after_the_limit(lab_url):
    turn = chat.ask("Loop.", [{"role": "system", "content": "s"}], scripted(*[RUN] * 5), LabClient(lab_url),
                    max_calls=3)
    assert len(turn.calls) == 3 and turn.answer == RUN


def test_broken_tool_lines_count_towards_the_limit(lab_url):
    said = []
    broken = [f"TOOL: {{oops {i}" for i in range(10)]
    turn = chat.ask("Loop.", [{"role": "system", "content": "s"}], scripted(*broken), LabClient(lab_url),
                    said.append, max_calls=3)
    assert len(turn.calls) == 3 and not any(c["ok"] for c in turn.calls) and turn.answer == broken[3]
    assert said[-1] == "[tool] stopped after 3 tool calls for one question"


@pytest.mark.parametrize("bad, problem", [
    (tools.tool_line("discovery", {"phases": ["spt_cluster", "pseudorandom"], "pseudorandom": 100}),
     "discovery has no argument 'pseudorandom'"),  # run 28's chat sent this four times
    (tools.tool_line("run_phase", {"phase_type": "spt_cluster", "system_size": 40}), "HTTP 422"),
])
def test_a_refused_call_sent_again_stops_the_question_with_the_reason(lab_url, bad, problem):
    said = []
    model = scripted(bad, bad, RUN)
    turn = chat.ask("Run it.", [{"role": "system", "content": "s"}], model, LabClient(lab_url), said.append, max_calls=3)
    assert len(model.seen) == 2 and len(turn.calls) == 1 and turn.answer == bad  # never sent to the lab twice
    assert said[-1].startswith("[tool] the model sent the refused call again (") and problem in said[-1]


def test_a_follow_up_is_answered_without_a_new_call(lab_url):
    model = scripted(RUN, "Phase: spt_cluster.", "string_order was 0.94 in that run.")
    messages = [{"role": "system", "content": "s"}]
    chat.ask("Run it.", messages, model, LabClient(lab_url))
    second = chat.ask("What was the string order?", messages, model, LabClient(lab_url))
    assert second.calls == [] and len(model.seen[2]) == 6


@pytest.fixture
def stand_in_ollama():
    """A stand-in for Ollama's /api/tags and /api/chat that replies TOOL, then explains; it records requests."""
    app, requests_seen = FastAPI(), []

    @app.get("/api/tags")
    def tags():
        return {"models": [{"name": "ben-lab:latest"}]}

    @app.post("/api/chat")
    def api_chat(body: dict):
        requests_seen.append(body)
        last = body["messages"][-1]["content"]
        content = "Phase: spt_cluster, measured." if last.startswith("Experiment result:") else RUN
        return {"message": {"role": "assistant", "content": content}, "done": True}

    with serve(app) as url:
        yield url, requests_seen


def cli(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "chat_with_lab.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def test_once_json_through_a_stand_in_ollama(lab_url, stand_in_ollama):
    url, seen = stand_in_ollama
    import os

    env = {**os.environ, "OLLAMA_HOST": url.removeprefix("http://")}
    result = cli("--once", "Run the cluster state.", "--json", "--api-url", lab_url, env=env)
    assert result.returncode == 0, result.stderr
    exchange = json.loads(result.stdout)
    assert exchange["backend"].startswith("Ollama model ben-lab")
    turn = exchange["turns"][0]
    assert turn["answer"] == "Phase: spt_cluster, measured." and turn["calls"][0]["ok"]
    assert seen[0]["messages"][0] == {"role": "system", "content": tools.LAB_LOOP_SYSTEM_PROMPT}
    assert seen[0]["options"]["temperature"] == 0 and seen[1]["messages"][-1]["content"].startswith("Experiment result: {")
    mine = cli("--once", "hi", "--json", "--api-url", lab_url, "--system", "Be brief.", env=env)
    assert mine.returncode == 0 and seen[-1]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_interactive_chat_ends_on_exit(lab_url, stand_in_ollama):
    import os

    env = {**os.environ, "OLLAMA_HOST": stand_in_ollama[0].removeprefix("http://")}
    run = subprocess.run([sys.executable, str(ROOT / "chat_with_lab.py"), "--api-url", lab_url], input="Run it.\nexit\n",
                         capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert run.returncode == 0 and "ben-lab> Phase: spt_cluster, measured." in run.stdout
    assert "[tool] run_phase" in run.stdout and "Traceback" not in run.stderr


def test_unreachable_lab_or_backend_is_one_line(lab_url, tmp_path):
    import os

    nowhere = f"http://127.0.0.1:{free_port()}"
    no_lab = cli("--once", "hi", "--api-url", nowhere)
    assert no_lab.returncode == 2 and "jarvis_api.py" in no_lab.stderr and len(no_lab.stderr.splitlines()) == 1
    env = {**os.environ, "OLLAMA_HOST": nowhere.removeprefix("http://")}
    no_ollama = cli("--once", "hi", "--api-url", lab_url, "--backend", "ollama", env=env)
    assert no_ollama.returncode == 2 and "ollama serve" in no_ollama.stderr and "Traceback" not in no_ollama.stderr
    no_gguf = cli("--once", "hi", "--api-url", lab_url, "--backend", "llama-cpp", "--gguf", str(tmp_path / "x.gguf"))
    assert no_gguf.returncode == 2 and "train_and_install.sh" in no_gguf.stderr


def test_once_on_llama_cpp_with_a_tiny_gguf(lab_url, tiny_llama, tmp_path):
    gguf_path = tmp_path / "tiny.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, gguf_path, "f32")
    result = cli("--once", "Which phase has string order?", "--json", "--backend", "llama-cpp", "--gguf",
                 str(gguf_path), "--api-url", lab_url)
    assert result.returncode == 0, result.stderr
    exchange = json.loads(result.stdout)
    assert exchange["backend"] == f"llama.cpp on {gguf_path}" and exchange["messages"][1]["role"] == "user"


def test_a_conversation_longer_than_the_context_is_one_line(lab_url, tiny_llama, tmp_path):
    gguf_path = tmp_path / "tiny.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, gguf_path, "f32")
    result = cli("--once", "phase " * 9000, "--backend", "llama-cpp", "--gguf", str(gguf_path), "--api-url", lab_url)
    assert result.returncode == 2 and "no longer fits" in result.stderr and "Traceback" not in result.stderr


def test_questions_file_answers_each_line_in_a_chat_of_its_own(lab_url, stand_in_ollama, tmp_path):
    import os

    url, seen = stand_in_ollama
    env = {**os.environ, "OLLAMA_HOST": url.removeprefix("http://")}
    asked = tmp_path / "questions.txt"
    asked.write_text("Run the cluster state.\n\nRun it again, please.\n")
    result = cli("--questions", str(asked), "--json", "--api-url", lab_url, env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["turns"][0]["question"] for line in lines] == ["Run the cluster state.", "Run it again, please."]
    assert all(line["turns"][0]["calls"][0]["ok"] and len(line["messages"]) == 5 for line in lines)
    assert [m["role"] for m in seen[2]["messages"]] == ["system", "user"]  # the second question starts afresh
    plain = cli("--questions", str(asked), "--api-url", lab_url, env=env)
    assert plain.stdout.count("ben-lab> Phase: spt_cluster, measured.") == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    for path in (empty, tmp_path / "missing.txt"):
        bad = cli("--questions", str(path), "--api-url", lab_url, env=env)
        assert bad.returncode == 2 and str(path) in bad.stderr and len(bad.stderr.splitlines()) == 1
    both = cli("--questions", str(asked), "--once", "hi", "--api-url", lab_url, env=env)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_a_question_that_outgrows_the_context_does_not_stop_the_others(lab_url, tiny_llama, tmp_path):
    gguf_path = tmp_path / "tiny.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, gguf_path, "f32")
    asked = tmp_path / "questions.txt"
    asked.write_text("phase " * 9000 + "\nWhich phase has string order?\n")
    result = cli("--questions", str(asked), "--json", "--backend", "llama-cpp", "--gguf", str(gguf_path),
                 "--api-url", lab_url, "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert "no longer fits" in first["error"] and second["turns"][0]["question"] == "Which phase has string order?"
