"""The demo: the walkthrough runs straight through; --chat answers through llama.cpp without Ollama."""

from benlab import demo, hf_to_gguf
from benlab.common import run_main


def test_walkthrough_runs_real_steps(lab_url, tiny_llama, capsys):
    assert run_main(demo.main, ["--yes", "--api-url", lab_url, "--base-model", str(tiny_llama)]) == 0
    out = capsys.readouterr().out
    assert "string_order" in out and "assistant: TOOL: {\"name\": \"run_phase\"" in out
    assert "user:      Experiment result: {" in out and "phase_type is spt_cluster" in out
    assert "trains" in out and "FROM ./ben-lab.gguf" in out


def test_chat_through_llama_cpp(tiny_llama, tmp_path, monkeypatch, capsys):
    import io

    model = tmp_path / "ben-lab.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, model, "f32")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no ollama
    monkeypatch.setattr("sys.stdin", io.StringIO("What is TRI?\nexit\n"))
    assert run_main(demo.main, ["--chat", "--gguf", str(model)]) == 0
    out = capsys.readouterr().out
    assert "llama.cpp" in out and out.count("ben-lab>") == 1
