"""LoRA fine-tuning on a tiny llama-architecture model built in the test, with data from the real lab."""

import json
import signal

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from benlab import train
from benlab.common import run_main
from tests.conftest import build_tiny_llama


def finetune(tiny_llama, lab_data, out, *extra):
    train_file, eval_file = lab_data
    argv = ["--base-model", str(tiny_llama), "--data", str(train_file), "--eval-data", str(eval_file),
            "--output-dir", str(out), "--batch-size", "4", "--grad-accum", "1", "--lr", "1e-2", "--max-seq-len", "256", *extra]
    return run_main(train.main, argv)


@pytest.fixture(scope="module")
def trained(tiny_llama, lab_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapter")
    assert finetune(tiny_llama, lab_data, out, "--max-steps", "30", "--save-steps", "100") == 0
    return out


def test_prompt_tokens_are_masked(tiny_llama, lab_data):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = train.read_chats(str(lab_data[0]))[0]
    row = train.encode(chat, tokenizer, 512)
    answer = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    prompt = [label for label in row["labels"] if label == -100]
    assert len(prompt) > 20 and row["labels"][: len(prompt)] == prompt
    assert tokenizer.decode(answer) == chat[-1]["content"] + "<|im_end|>\n"


def test_loss_decreases_and_outputs_are_complete(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["loss_history"] if "loss" in h]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "loss_curve.png"):
        assert (trained / name).exists(), name
    assert (trained / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert {"tokens_per_second", "wall_seconds", "peak_rss_mb", "eval_loss", "config"} <= set(metrics)
    assert metrics["config"]["max_steps"] == 30 and metrics["trainable_parameters"] > 0


def test_adapter_reloads_and_changes_the_logits(trained, tiny_llama):
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), trained)
    after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-3


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tiny_llama, lab_data, tmp_path, monkeypatch):
    class PressCtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                signal.raise_signal(signal.SIGINT)

    real = train.make_callbacks
    monkeypatch.setattr(train, "make_callbacks", lambda stop: real(stop) + [PressCtrlC()])
    assert finetune(tiny_llama, lab_data, tmp_path, "--max-steps", "6") == 130
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-3"]
    assert not (tmp_path / "adapter_model.safetensors").exists()
    monkeypatch.setattr(train, "make_callbacks", real)
    assert finetune(tiny_llama, lab_data, tmp_path, "--max-steps", "6", "--resume") == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 6 and (tmp_path / "adapter_model.safetensors").exists()


def test_base_without_template_gets_the_standard_one(lab_data, tmp_path):
    bare = build_tiny_llama(tmp_path / "bare", chat_template=None)
    assert finetune(bare, lab_data, tmp_path / "out", "--max-steps", "1") == 0
    saved = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert "<|im_start|>" in saved.chat_template
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["chat_template_source"] == "ChatML standard"


def bad_file(tmp_path, text):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "not found"),
        ("", "is empty"),
        ('{"instruction": "q", "output": "a"}\n{not json}\n', "line 2: not valid JSON"),
        ('{"messages": []}\n', "line 1: 'messages' must be a list"),
        ('{"instruction": "q"}\n', "line 1: missing field(s) output"),
    ],
)
def test_bad_data_is_one_line_and_writes_nothing(tiny_llama, tmp_path, capsys, content, needle):
    data = str(tmp_path / "missing.jsonl") if content is None else bad_file(tmp_path, content)
    code = run_main(train.main, ["--base-model", str(tiny_llama), "--data", data, "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()


def test_missing_base_model_says_where_it_looked(lab_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = run_main(train.main, ["--base-model", "no-such-org/no-such-model", "--data", str(lab_data[0]),
                                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Hugging Face cache" in err and "--base-model" in err
    assert not (tmp_path / "out").exists()
