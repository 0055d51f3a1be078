"""Fidelity in llama.cpp (llama-cpp-python), on explicit token ids: the change in logits the GGUF adapter causes in
llama.cpp equals the change the PEFT adapter causes in transformers, and the merged GGUF matches base + adapter."""

from pathlib import Path

import numpy as np
import pytest
import torch
from llama_cpp import Llama
from peft import PeftModel
from transformers import AutoModelForCausalLM

from benlab import export, hf_to_gguf, train
from tests.conftest import build_tiny_model, strengthen

TOKENS = [5, 17, 42, 99, 7, 230, 11, 64, 301, 2, 88, 150]
BOUND = 1e-2


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """Weights at the usual 0.02 scale, so logits are of the size real models produce."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-cpp"), initializer_range=0.02)


@pytest.fixture(scope="module")
def strong_adapter(tiny_llama, tmp_path_factory, lab_data):
    """A trained adapter whose B matrices are replaced by random ones, so the adapter moves the logits a lot."""
    from benlab import train
    from benlab.common import run_main

    trained = tmp_path_factory.mktemp("trained")
    argv = ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(trained), "--max-steps", "1",
            "--batch-size", "2", "--grad-accum", "1", "--max-seq-len", "512", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    return strengthen(trained, tiny_llama, tmp_path_factory.mktemp("strong"))


ALL_MODULES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
               "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj"}


def write_random_lora(gguf_path, arch, model_type, modules, rank, out, scale, rng):
    """A PEFT adapter folder shaped for a GGUF base (random A; B scaled by `scale`, 0 for a zero adapter)."""
    import json

    import gguf
    from safetensors.numpy import save_file

    reader = gguf.GGUFReader(str(gguf_path))
    meta = {k: f.contents() for k, f in reader.fields.items() if k.startswith(f"{arch}.")}
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}  # gguf order: (in, out)
    tensors = {}
    for layer in range(meta[f"{arch}.block_count"]):
        for short, module in modules.items():
            n_in, n_out = shapes[f"blk.{layer}.{short}.weight"]
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{prefix}.lora_A.weight"] = (0.05 * rng.standard_normal((rank, n_in))).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = (scale * rng.standard_normal((n_out, rank))).astype(np.float32)
    out.mkdir()
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 2 * rank}))
    config = {"model_type": model_type, "num_attention_heads": meta[f"{arch}.attention.head_count"],
              "num_key_value_heads": meta[f"{arch}.attention.head_count_kv"],
              "num_hidden_layers": meta[f"{arch}.block_count"]}
    (out / "metrics.json").write_text(json.dumps({"model_config": config}))
    return tensors


def hf_logits(tiny_llama, adapter=None):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    with torch.no_grad():
        return model(torch.tensor([TOKENS])).logits[0].numpy()


def cpp_logits(model_path, adapter=None):
    # f32 KV cache (type 0): the default f16 cache would add its own rounding to what is being compared.
    llm = Llama(model_path=str(model_path), lora_path=str(adapter) if adapter else None, logits_all=True, n_ctx=64,
                n_threads=2, type_k=0, type_v=0, verbose=False)
    llm.eval(TOKENS)
    return np.array(llm.scores[: len(TOKENS)], dtype=np.float32)


@pytest.mark.parametrize("out_type", ["f32", "f16"])
def test_adapter_changes_logits_in_llama_cpp_as_in_peft(tiny_llama, strong_adapter, tmp_path, out_type):
    base = tmp_path / "base.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, base, "f32")
    adapter = tmp_path / "adapter.gguf"
    export.write_adapter_gguf(strong_adapter, adapter, out_type, base)
    peft_delta = hf_logits(tiny_llama, strong_adapter) - hf_logits(tiny_llama)
    cpp_base, cpp_tuned = cpp_logits(base), cpp_logits(base, adapter)
    assert np.abs(peft_delta).max() > 0.5  # the adapter really moves the logits
    error = np.abs((cpp_tuned - cpp_base) - peft_delta).max()
    assert error <= BOUND, error
    assert (cpp_tuned.argmax(-1) == hf_logits(tiny_llama, strong_adapter).argmax(-1)).all()


def test_merged_gguf_equals_base_plus_adapter(tiny_llama, strong_adapter, tmp_path):
    base = tmp_path / "base.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, base, "f16")  # an f16 base, as real bases are, merged into f16
    adapter, merged = tmp_path / "adapter.gguf", tmp_path / "merged.gguf"
    export.write_adapter_gguf(strong_adapter, adapter, "f32", base)
    export.merge_into_gguf(strong_adapter, base, merged, "f16")
    with_adapter, merged_logits = cpp_logits(base, adapter), cpp_logits(merged)
    assert np.abs(merged_logits - with_adapter).max() <= BOUND
    assert (merged_logits.argmax(-1) == with_adapter.argmax(-1)).all()


def test_gemma3_adapter_applies_in_llama_cpp_to_the_real_gemma3_gguf(tmp_path):
    """gemma3 (its own tensor names, no rotary permutation) against the real Gemma 3 270M GGUF: the base check
    passes, llama.cpp loads and applies the adapter, and a zero adapter changes nothing. (The adapter's effect is not
    compared with PEFT's to 1e-2: on this Q4_K model the two runtimes differ by more than that without any adapter,
    see the next test.)"""

    import gguf

    from benlab import models

    base = models.resolve("gemma3-270m")  # the embedded package, installed by scripts/bootstrap.sh
    gguf_path = Path(base.path) / base.gguf_file
    layers = gguf.GGUFReader(str(gguf_path)).fields["gemma3.block_count"].contents()
    rng = np.random.default_rng(0)
    tensors = write_random_lora(gguf_path, "gemma3", "gemma3_text", ALL_MODULES, 8, tmp_path / "lora", 0.01, rng)
    write_random_lora(gguf_path, "gemma3", "gemma3_text", ALL_MODULES, 8, tmp_path / "zero", 0.0, rng)
    adapter, zero = tmp_path / "adapter.gguf", tmp_path / "zero.gguf"
    export.write_adapter_gguf(tmp_path / "lora", adapter, "f32", gguf_path)
    export.write_adapter_gguf(tmp_path / "zero", zero, "f32", gguf_path)
    written = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(adapter)).tensors}
    np.testing.assert_array_equal(written["blk.0.attn_q.weight.lora_b"],  # no permutation for gemma3
                                  tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])
    assert len(written) == 2 * 7 * layers
    plain = cpp_logits(gguf_path)
    np.testing.assert_allclose(cpp_logits(gguf_path, zero), plain, atol=1e-3)
    assert np.abs(cpp_logits(gguf_path, adapter) - plain).max() > 0.1


def test_transformers_and_llama_cpp_compute_the_same_gemma3():
    """A LoRA trained on Gemma 3 in transformers is trained on the model llama.cpp runs: the same next-token choice
    at every position of a lab sentence, logits correlated > 0.99. They are not equal: transformers multiplies the
    dequantized fp32 weights, llama.cpp the Q4_K blocks with 8-bit activations (measured: max difference ~2-4 over
    the 262k-word vocabulary, correlation 0.997-0.9996)."""
    from benlab import models

    base = models.resolve("gemma3-270m")
    tokenizer = models.load_tokenizer(base)
    ids = tokenizer("The cluster state of a spin chain has hidden topological order, measured by the string order "
                    "parameter.")["input_ids"]
    model = models.load_model(base, torch.float32).eval()
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].numpy()
    del model
    llm = Llama(model_path=str(Path(base.path) / base.gguf_file), logits_all=True, n_ctx=64, n_threads=2, verbose=False)
    llm.eval(ids)
    cpp = np.array(llm.scores[: len(ids)], dtype=np.float32)
    assert (hf.argmax(-1) == cpp.argmax(-1)).all()
    assert min(np.corrcoef(h, c)[0, 1] for h, c in zip(hf, cpp)) > 0.99


def test_merge_into_the_embedded_smollm2_q4_1_gguf_loads_in_llama_cpp(tmp_path):
    """The default path: an adapter merged into the embedded SmolLM2-135M Q4_1 GGUF. llama.cpp loads the merged
    file; a zero adapter keeps the base's next-token choices (only the adapted tensors change type, Q4_1 -> f16),
    a random one moves the logits."""


    from benlab import models

    base = models.resolve("smollm2")
    gguf_path = Path(base.path) / base.gguf_file
    modules = {short: ALL_MODULES[short] for short in ("attn_q", "attn_k", "ffn_down")}
    rng = np.random.default_rng(0)
    write_random_lora(gguf_path, "llama", "llama", modules, 4, tmp_path / "zero", 0.0, rng)
    write_random_lora(gguf_path, "llama", "llama", modules, 4, tmp_path / "random", 0.05, rng)
    export.merge_into_gguf(tmp_path / "zero", gguf_path, tmp_path / "zero.gguf", "f16")
    export.merge_into_gguf(tmp_path / "random", gguf_path, tmp_path / "random.gguf", "f16")
    plain, zero, moved = (cpp_logits(p) for p in (gguf_path, tmp_path / "zero.gguf", tmp_path / "random.gguf"))
    assert (zero.argmax(-1) == plain.argmax(-1)).mean() >= 0.75
    assert np.corrcoef(zero.ravel(), plain.ravel())[0, 1] > 0.99
    assert np.abs(moved - zero).max() > 1.0


# ---------------------------------------------------------------- every supported architecture, the whole path

@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3", "phi3", "gemma3"])
def exported(request, lab_data, tmp_path_factory):
    """finetune_ben_lab.py --base-model DIR on a tiny random model of the architecture, then export_ben_lab.py (which
    converts the base to GGUF, writes the GGUF adapter, the merged GGUF and the Modelfile)."""
    from benlab import deploy, train
    from benlab.common import run_main

    folder = tmp_path_factory.mktemp(request.param)
    base = build_tiny_model(folder / "base", request.param, initializer_range=0.02)
    argv = ["--base-model", str(base), "--data", str(lab_data[0]), "--output-dir", str(folder / "trained"),
            "--max-steps", "1", "--batch-size", "2", "--max-seq-len", "512", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    adapter = strengthen(folder / "trained", base, folder / "adapter")
    out = folder / "export"
    argv = ["--adapter-dir", str(adapter), "--out-dir", str(out), "--outtype", "f32", "--skip-ollama", "--skip-llama-cpp"]
    assert run_main(deploy.main, argv) == 0
    return request.param, base, adapter, out


def test_each_architecture_converts_to_the_model_llama_cpp_runs(exported, tmp_path):
    """Our HF -> GGUF conversion: llama.cpp computes the same logits as transformers on the f32 base."""
    _, base, _, _ = exported
    converted = tmp_path / "base.gguf"
    hf_to_gguf.convert_hf_model(base, converted, "f32")
    error = np.abs(cpp_logits(converted) - hf_logits(base)).max()
    assert error <= BOUND, error


def test_each_architectures_adapter_changes_logits_in_llama_cpp_as_in_peft(exported, tmp_path):
    model_type, base, adapter, _ = exported
    converted, adapter_gguf = tmp_path / "base.gguf", tmp_path / "adapter.gguf"
    hf_to_gguf.convert_hf_model(base, converted, "f32")
    info = export.write_adapter_gguf(adapter, adapter_gguf, "f32", converted)
    fused = model_type == "phi3"  # qkv_proj and gate_up_proj: 4 adapted matrices a layer instead of 7
    n_layers = AutoModelForCausalLM.from_pretrained(base).config.num_hidden_layers
    assert info["tensors"] == 2 * (4 if fused else 7) * len(train.adapted_layers(train.TrainConfig().lora_layers, n_layers))
    peft_delta = hf_logits(base, adapter) - hf_logits(base)
    assert np.abs(peft_delta).max() > 0.5  # the adapter really moves the logits
    error = np.abs((cpp_logits(converted, adapter_gguf) - cpp_logits(converted)) - peft_delta).max()
    assert error <= BOUND, error


def test_each_architectures_merged_gguf_equals_base_plus_adapter(exported):
    """The files export_ben_lab.py wrote: f16 base, f32 adapter, f16 merged model, and the family's Modelfile."""
    model_type, _, _, out = exported
    with_adapter = cpp_logits(out / "ben-lab-base.gguf", out / "ben-lab-adapter.gguf")
    merged = cpp_logits(out / "ben-lab.gguf")
    assert np.abs(merged - with_adapter).max() <= BOUND
    assert (merged.argmax(-1) == with_adapter.argmax(-1)).all()
    stops = {"llama": "<|im_end|>", "qwen2": "<|im_end|>", "qwen3": "<|im_end|>", "phi3": "<|end|>",
             "gemma3": "<end_of_turn>"}[model_type]
    assert f'PARAMETER stop "{stops}"' in (out / "Modelfile").read_text()


def test_an_architecture_the_exporter_does_not_know_is_one_line_and_no_file(lab_data, tmp_path, capsys):
    """A Mistral model (llama's weights under another model_type) trains, but GGUF export refuses it up front."""
    import json

    from benlab import deploy, train
    from benlab.common import run_main

    base = build_tiny_model(tmp_path / "base")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "model_type": "mistral", "architectures": ["MistralForCausalLM"]}))
    argv = ["--base-model", str(base), "--data", str(lab_data[0]), "--output-dir", str(tmp_path / "trained"),
            "--max-steps", "1", "--batch-size", "2", "--max-seq-len", "256", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    capsys.readouterr()
    out = tmp_path / "export"
    assert run_main(deploy.main, ["--adapter-dir", str(tmp_path / "trained"), "--out-dir", str(out), "--skip-ollama"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'mistral'" in err[0] and "gemma3, gemma3_text, llama, phi3, qwen2, qwen3" in err[0], err
    assert not list(out.iterdir())


# ---------------------------------------------------------------- several adapters

def cpp_logits_with_adapters(model_path, adapters_and_scales):
    """llama.cpp on the base with several GGUF adapters applied at once, each at its own scale (the llama.cpp API
    behind `--lora-scaled A 0.7 --lora-scaled B 0.3`)."""
    import ctypes

    import llama_cpp

    llm = Llama(model_path=str(model_path), logits_all=True, n_ctx=64, n_threads=2, type_k=0, type_v=0, verbose=False)
    handles = [llama_cpp.llama_adapter_lora_init(llm._model.model, str(path).encode()) for path, _ in adapters_and_scales]
    assert all(handles)
    count = len(handles)
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * count)(*handles)
    scales = (ctypes.c_float * count)(*[scale for _, scale in adapters_and_scales])
    assert llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, adapters, count, scales) == 0
    llm.eval(TOKENS)
    return np.array(llm.scores[: len(TOKENS)], dtype=np.float32)


@pytest.fixture(scope="module")
def second_adapter(tiny_llama, lab_data, tmp_path_factory):
    """Another adapter on the same base: another rank, other layers, other seed."""
    from benlab import train
    from benlab.common import run_main

    trained = tmp_path_factory.mktemp("second-trained")
    argv = ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(trained), "--max-steps", "1",
            "--batch-size", "2", "--max-seq-len", "512", "--general-replay", "0", "--lora-r", "8",
            "--target-modules", "q_proj,v_proj,down_proj", "--seed", "3"]
    assert run_main(train.main, argv) == 0
    return strengthen(trained, tiny_llama, tmp_path_factory.mktemp("second"))


def test_two_adapters_merge_into_what_llama_cpp_computes_with_both_at_those_scales(tiny_llama, strong_adapter,
                                                                                  second_adapter, tmp_path, capsys):
    """export_ben_lab.py --adapter-dir A --adapter-dir B --weights 0.7 0.3: the merged GGUF, and the one combined
    adapter the Modelfile's single ADAPTER line takes, equal the base with A at 0.7 and B at 0.3 in llama.cpp."""
    from benlab import deploy
    from benlab.common import run_main

    base = tmp_path / "base.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, base, "f16")
    singles = []
    for name, adapter in (("a", strong_adapter), ("b", second_adapter)):
        export.write_adapter_gguf(adapter, tmp_path / f"{name}.gguf", "f32", base)
        singles.append(tmp_path / f"{name}.gguf")
    out = tmp_path / "out"
    argv = ["--adapter-dir", str(strong_adapter), "--adapter-dir", str(second_adapter), "--weights", "0.7", "0.3",
            "--base-gguf", str(base), "--out-dir", str(out), "--outtype", "f32", "--skip-ollama", "--skip-llama-cpp",
            "--ollama-mode", "adapter"]
    assert run_main(deploy.main, argv) == 0
    assert "combining 2 adapter(s) at weight(s) 0.7, 0.3 into one (rank 24" in capsys.readouterr().out
    both = cpp_logits_with_adapters(base, [(singles[0], 0.7), (singles[1], 0.3)])
    assert np.abs(both - cpp_logits_with_adapters(base, [(singles[0], 1.0)])).max() > 0.1  # B really counts
    merged = cpp_logits(out / "ben-lab.gguf")
    assert np.abs(merged - both).max() <= BOUND
    assert np.abs(cpp_logits(base, out / "ben-lab-adapter.gguf") - both).max() <= BOUND
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.count("ADAPTER ") == 1 and "ADAPTER ./ben-lab-adapter.gguf" in modelfile


def test_adapters_of_different_bases_are_refused_in_one_line(strong_adapter, tmp_path, capsys, lab_data):
    from benlab import deploy, train
    from benlab.common import run_main

    other = build_tiny_model(tmp_path / "other-base", seed=1)
    argv = ["--base-model", str(other), "--data", str(lab_data[0]), "--output-dir", str(tmp_path / "other"),
            "--max-steps", "1", "--batch-size", "2", "--max-seq-len", "256", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    argv = ["--adapter-dir", str(strong_adapter), "--adapter-dir", str(tmp_path / "other"), "--out-dir", str(out),
            "--skip-ollama", "--skip-llama-cpp"]
    assert run_main(deploy.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "adapters combine only when trained on the same base model" in err[0], err
    assert not list(out.iterdir())
    with pytest.raises(SystemExit) as stop:  # a weight count that does not match: argparse's one-line error, exit 2
        deploy.parse_args(["--adapter-dir", str(strong_adapter), "--weights", "0.7", "0.3"])
    assert stop.value.code == 2 and "give one weight per adapter" in capsys.readouterr().err


def test_llama3_rope_scaling_converts_to_the_rope_freqs_llama_cpp_applies(tmp_path):
    """Llama 3.1+ (the GPU default, Llama-3.2-1B) scales its rotary frequencies: the conversion writes them as
    rope_freqs, and llama.cpp then computes transformers' logits (which the scaling visibly changes)."""
    import json

    model = build_tiny_model(tmp_path / "llama3")  # large weights: attention, and so the rotation, matters
    plain = hf_logits(model)
    config = json.loads((model / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    (model / "config.json").write_text(json.dumps(config))
    scaled = hf_logits(model)
    assert np.abs(scaled - plain).max() > 0.1
    converted = tmp_path / "llama3.gguf"
    hf_to_gguf.convert_hf_model(model, converted, "f32")
    assert np.abs(cpp_logits(converted) - scaled).max() <= BOUND
