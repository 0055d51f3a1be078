"""Adapter -> GGUF, merged GGUF, Modelfile and the ollama boundary, on a tiny llama trained in the test."""

import errno
import json
import os
import stat
from types import SimpleNamespace

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from benlab import deploy, export, hf_to_gguf, ollama
from benlab.common import run_main
from benlab.prompts import SYSTEM_PROMPT
from benlab import train
from tests.conftest import build_tiny_model


@pytest.fixture(scope="module")
def adapter_dir(tiny_llama, lab_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    argv = ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(out), "--max-steps", "8",
            "--batch-size", "4", "--grad-accum", "1", "--lr", "1e-2", "--max-seq-len", "256", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    return out


@pytest.fixture(scope="module")
def base_gguf(tiny_llama, tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "base.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, path, "f32")
    return path


def fields(path):
    reader = gguf.GGUFReader(str(path))
    return reader, {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_adapter_gguf_metadata_names_and_shapes(adapter_dir, base_gguf, tmp_path):
    out = tmp_path / "adapter.gguf"
    export.write_adapter_gguf(adapter_dir, out, "f32", base_gguf)
    reader, meta = fields(out)
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora"
    assert meta["adapter.lora.alpha"] == 32.0 and meta["general.architecture"] == "llama"
    base_shapes = {t.name: tuple(int(x) for x in t.shape) for t in gguf.GGUFReader(str(base_gguf)).tensors}
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    for t in reader.tensors:
        base_name = t.name.rsplit(".", 1)[0]
        r_in_out = base_shapes[base_name]
        if t.name.endswith("lora_a"):
            assert tuple(int(x) for x in t.shape) == (r_in_out[0], 16)
        else:
            assert tuple(int(x) for x in t.shape) == (16, r_in_out[1])


def test_lora_b_of_q_and_k_gets_the_rotary_permutation(adapter_dir, base_gguf, tmp_path):
    out = tmp_path / "adapter.gguf"
    export.write_adapter_gguf(adapter_dir, out, "f32", base_gguf)
    tensors = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(out)).tensors}
    peft = load_file(str(adapter_dir / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.0.self_attn"
    q_b, k_b = peft[f"{prefix}.q_proj.lora_B.weight"], peft[f"{prefix}.k_proj.lora_B.weight"]
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight.lora_b"], export.permute_rows(q_b, 4))
    np.testing.assert_array_equal(tensors["blk.0.attn_k.weight.lora_b"], export.permute_rows(k_b, 2))
    np.testing.assert_array_equal(tensors["blk.0.attn_v.weight.lora_b"], peft[f"{prefix}.v_proj.lora_B.weight"])
    assert not np.array_equal(export.permute_rows(q_b, 4), q_b)


@pytest.mark.parametrize("out_type", ["f16", "bf16"])
def test_adapter_output_types(adapter_dir, tmp_path, out_type):
    out = tmp_path / "adapter.gguf"
    export.write_adapter_gguf(adapter_dir, out, out_type)
    assert {t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors} == {out_type.upper()}


@pytest.mark.parametrize("merged_type", ["f16", "q8_0"])
def test_merged_gguf_adds_the_scaled_lora_and_copies_everything_else(adapter_dir, base_gguf, tmp_path, merged_type):
    out = tmp_path / "merged.gguf"
    export.merge_into_gguf(adapter_dir, base_gguf, out, merged_type, chat_template="{{ x }}")
    base_reader, base_meta = fields(base_gguf)
    merged_reader, merged_meta = fields(out)
    for key, value in base_meta.items():
        if key != "general.file_type":
            assert merged_meta[key] == value, key
    assert merged_meta["tokenizer.chat_template"] == base_meta["tokenizer.chat_template"]  # the base had one
    base_t = {t.name: t for t in base_reader.tensors}
    merged_t = {t.name: t for t in merged_reader.tensors}
    assert set(base_t) == set(merged_t)
    peft = load_file(str(adapter_dir / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.1.self_attn.q_proj"
    delta = 2.0 * export.permute_rows(peft[f"{prefix}.lora_B.weight"], 4) @ peft[f"{prefix}.lora_A.weight"]
    expected = np.array(base_t["blk.1.attn_q.weight"].data) + delta
    got = gguf.quants.dequantize(merged_t["blk.1.attn_q.weight"].data, merged_t["blk.1.attn_q.weight"].tensor_type)
    np.testing.assert_allclose(got, expected, atol=2e-2 if merged_type == "q8_0" else 2e-3)
    np.testing.assert_array_equal(np.array(merged_t["output_norm.weight"].data), np.array(base_t["output_norm.weight"].data))


def test_a_base_without_template_gets_the_trained_one(adapter_dir, tmp_path):
    bare = build_tiny_model(tmp_path / "bare", chat_template=None)
    base = tmp_path / "bare.gguf"
    hf_to_gguf.convert_hf_model(bare, base, "f32")
    assert "tokenizer.chat_template" not in fields(base)[1]
    out = tmp_path / "merged.gguf"
    export.merge_into_gguf(adapter_dir, base, out, "f16", chat_template="TEMPLATE")
    assert fields(out)[1]["tokenizer.chat_template"] == "TEMPLATE"


def test_mismatched_base_is_refused_and_nothing_is_written(adapter_dir, tmp_path):
    other = build_tiny_model(tmp_path / "other", seed=1)
    config = json.loads((other / "config.json").read_text())
    config["num_hidden_layers"] = 1
    (other / "config.json").write_text(json.dumps(config))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(other).save_pretrained(other)
    wrong = tmp_path / "wrong.gguf"
    hf_to_gguf.convert_hf_model(other, wrong, "f32")
    with pytest.raises(export.BenLabError, match="layers"):
        export.merge_into_gguf(adapter_dir, wrong, tmp_path / "merged.gguf")
    assert not (tmp_path / "merged.gguf").exists() and not list(tmp_path.glob(".*tmp"))


def test_no_disk_space_is_one_line_and_keeps_the_previous_file(adapter_dir, base_gguf, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ben-lab.gguf"
    out.write_bytes(b"previous model")
    monkeypatch.setattr(export.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))  # 1 kB free
    with pytest.raises(export.BenLabError, match="not enough disk space .* MB free; free some space"):
        export.merge_into_gguf(adapter_dir, base_gguf, out)
    assert out.read_bytes() == b"previous model" and not list(tmp_path.glob(".*tmp"))


def test_disk_filling_up_midway_keeps_the_previous_file(adapter_dir, base_gguf, tmp_path, monkeypatch):
    out = tmp_path / "ben-lab-adapter.gguf"
    out.write_bytes(b"previous adapter")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    with pytest.raises(export.BenLabError, match="disk filled up while writing .*unchanged"):
        export.write_adapter_gguf(adapter_dir, out)
    assert out.read_bytes() == b"previous adapter" and not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("key, value", [("use_dora", True), ("use_rslora", True), ("rank_pattern", {"q_proj": 4}),
                                        ("modules_to_save", ["lm_head"])])
def test_adapters_llama_cpp_cannot_apply_are_refused(adapter_dir, tmp_path, key, value):
    copy = tmp_path / "adapter"
    copy.mkdir()
    for f in adapter_dir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    config = json.loads((copy / "adapter_config.json").read_text())
    config[key] = value
    (copy / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(export.BenLabError, match="llama.cpp cannot apply"):
        export.write_adapter_gguf(copy, tmp_path / "a.gguf")


def damaged_copy(adapter_dir, tmp_path, damage):
    copy = tmp_path / "adapter"
    copy.mkdir()
    for f in adapter_dir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    damage(copy)
    return copy


def cut(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(len(path.read_bytes()) * keep)])


def set_config(copy, **changes):
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, **changes}))


def move_base(copy, **changes):
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["base_model"].update(changes)
    (copy / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("damage, needle", [
    (lambda d: cut(d / "adapter_model.safetensors"), "adapter_model.safetensors cannot be read"),
    (lambda d: move_base(d, path="/gone/tiny-llama"), "from /gone/tiny-llama, which is gone; put the model back"),
    (lambda d: cut(d / "adapter_config.json"), "adapter_config.json is not valid JSON"),
    (lambda d: set_config(d, r=0), "r must be a whole number of at least 1, got 0"),
    (lambda d: set_config(d, r=4), "adapter_config.json says r=4"),
    (lambda d: set_config(d, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj", "w_gate"]), "target_modules names w_gate"),
])
def test_a_damaged_adapter_is_one_line_and_nothing_is_written(adapter_dir, base_gguf, tmp_path, capsys, damage, needle):
    copy = damaged_copy(adapter_dir, tmp_path, damage)
    out = tmp_path / "out"
    argv = ["--adapter-dir", str(copy), "--out-dir", str(out), "--base-gguf", str(base_gguf), "--skip-ollama",
            "--skip-llama-cpp"]
    assert run_main(deploy.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not list(out.iterdir())


def test_an_unwritable_out_dir_is_one_line(adapter_dir, capsys):
    argv = ["--adapter-dir", str(adapter_dir), "--out-dir", "/proc/benlab-cannot-write-here", "--skip-ollama"]
    assert run_main(deploy.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out-dir /proc/benlab-cannot-write-here: cannot write there" in err[0], err


def test_modelfile_is_what_was_trained():
    chatml = "{{'<|im_start|>' + message['role'] }}"
    text = ollama.modelfile("./base.gguf", chatml, adapter="./ben-lab-adapter.gguf")
    assert "FROM ./base.gguf\nADAPTER ./ben-lab-adapter.gguf\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0.2" in text and "PARAMETER top_p 0.9" in text
    assert f'SYSTEM """{SYSTEM_PROMPT}"""' in text and "<|im_start|>assistant" in text
    merged = ollama.modelfile("./ben-lab.gguf", "<start_of_turn>", system='say """hi"""')
    assert "ADAPTER" not in merged and 'PARAMETER stop "<end_of_turn>"' in merged
    assert merged.count('"""') == 4  # the TEMPLATE and SYSTEM strings, each opened and closed once


def fake_ollama(directory, version="0.5.7", fail_create=False):
    """A stand-in `ollama` on PATH that logs its arguments and working directory."""
    log = directory / "ollama.log"
    script = directory / "ollama"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$PWD|$*" >> "{log}"\n'
        f'case "$1" in --version) echo "ollama version is {version}";;\n'
        f'  create) {"echo Error: unknown command ADAPTER >&2; exit 1" if fail_create else "echo success"};;\n'
        '  run) echo "spt_cluster needs stabilizer_mean > 0.5: here 0.86 against 0.50: ones 0 and 0, equal; '
        'tenths 8 and 5, 8 > 5, yes. Answer: spt_cluster.";;\nesac\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


@pytest.mark.parametrize("version, mode", [("0.5.7", "adapter"), ("0.34.1", "merged")])
def test_export_calls_a_stand_in_ollama_with_the_right_arguments(adapter_dir, base_gguf, tmp_path, monkeypatch, version, mode):
    log = fake_ollama(tmp_path, version)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    argv = ["--adapter-dir", str(adapter_dir), "--out-dir", str(out), "--base-gguf", str(base_gguf), "--skip-llama-cpp"]
    assert run_main(deploy.main, argv) == 0
    calls = log.read_text().splitlines()
    assert f"{out}|create ben-lab -f {out / 'Modelfile'}" in calls
    assert f"|run ben-lab {deploy.CHECK_QUESTION}\n" in log.read_text()  # the question spans lines
    assert ("ADAPTER ./ben-lab-adapter.gguf" in (out / "Modelfile").read_text()) == (mode == "adapter")
    assert (out / "ben-lab.gguf").exists() and (out / "ben-lab-adapter.gguf").exists()


def test_stand_in_ollama_create_failure_is_one_line(adapter_dir, base_gguf, tmp_path, monkeypatch, capsys):
    fake_ollama(tmp_path, fail_create=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    argv = ["--adapter-dir", str(adapter_dir), "--out-dir", str(tmp_path / "out"), "--base-gguf", str(base_gguf),
            "--skip-llama-cpp"]
    assert run_main(deploy.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ollama create ben-lab" in err[0] and "ADAPTER" in err[0]


def test_without_ollama_the_commands_are_printed(adapter_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    argv = ["--adapter-dir", str(adapter_dir), "--out-dir", str(tmp_path), "--skip-llama-cpp"]
    assert run_main(deploy.main, argv) == 0  # base GGUF converted from the tiny model's own weights
    printed = capsys.readouterr().out
    assert "ollama create ben-lab -f Modelfile" in printed and "FROM ./ben-lab.gguf" in (tmp_path / "Modelfile").read_text()
    assert (tmp_path / "ben-lab-base.gguf").exists()


def test_checked_in_modelfile_is_the_default_export():
    from pathlib import Path

    from benlab.models import CHATML_TEMPLATE

    assert Path("Modelfile").read_text() == ollama.modelfile("./ben-lab.gguf", CHATML_TEMPLATE)


@pytest.mark.parametrize("answer, verdict", [
    ("spt_cluster needs stabilizer_mean > 0.5: here 0.86 against 0.50: ones 0 and 0, equal; tenths 8 and 5, 8 > 5, yes. "
     "Answer: spt_cluster.", "check passed"),
    ("spt_cluster needs stabilizer_mean > 0.5: here 0.86 against 0.50: ones 0 and 0, equal; tenths 8 and 5, 8 < 5, no. "
     "Answer: trivial_product.",
     "warning: check failed: the answer names trivial_product, the run is spt_cluster"),
    ("I am not sure.", "warning: check failed: the answer names no phase"),
])
def test_the_install_check_is_judged(answer, verdict):
    assert deploy.check_verdict(answer).startswith(verdict)


@pytest.mark.parametrize("model_type, change, needle", [
    ("qwen2", lambda config, tok: config.update(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}),
     "rope type 'yarn' is not converted here"),
    ("llama", lambda config, tok: tok["model"].update(byte_fallback=True), "SentencePiece-style"),
    ("gemma3", lambda config, tok: config.update(text_config={}), "multimodal checkpoint"),
    ("gemma3", lambda config, tok: config.update(query_pre_attn_scalar=256), "differs from what llama.cpp assumes"),
    ("gemma3", lambda config, tok: config.update(layer_types=["full_attention"] * 6), "differs from what llama.cpp assumes"),
])
def test_conversions_llama_cpp_would_run_differently_are_refused(tmp_path, model_type, change, needle):
    """What a plain conversion would get wrong is one line saying to use llama.cpp's converter, and no file."""
    model = build_tiny_model(tmp_path / "model", model_type)
    config, tokenizer = (json.loads((model / name).read_text()) for name in ("config.json", "tokenizer.json"))
    change(config, tokenizer)
    (model / "config.json").write_text(json.dumps(config))
    (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(export.BenLabError, match=needle) as refused:
        hf_to_gguf.convert_hf_model(model, tmp_path / "base.gguf")
    assert "convert_hf_to_gguf.py" in str(refused.value) and "\n" not in str(refused.value)
    assert list(tmp_path.glob("*.gguf")) == [] and list(tmp_path.glob(".*.tmp")) == []
