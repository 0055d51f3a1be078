"""Fidelity in llama.cpp (llama-cpp-python), on explicit token ids: the change in logits the GGUF adapter causes in
llama.cpp equals the change the PEFT adapter causes in transformers, and the merged GGUF matches base + adapter."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from llama_cpp import Llama
from peft import PeftModel
from transformers import AutoModelForCausalLM

from benlab import export
from tests.conftest import build_tiny_llama

TOKENS = [5, 17, 42, 99, 7, 230, 11, 64, 301, 2, 88, 150]
BOUND = 1e-2


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """Weights at the usual 0.02 scale, so logits are of the size real models produce."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-cpp"), initializer_range=0.02)


@pytest.fixture(scope="module")
def strong_adapter(tiny_llama, tmp_path_factory, lab_data):
    """A trained adapter whose B matrices are replaced by random ones, so the adapter moves the logits a lot."""
    from benlab import train
    from benlab.common import run_main

    trained = tmp_path_factory.mktemp("trained")
    argv = ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(trained), "--max-steps", "1",
            "--batch-size", "2", "--grad-accum", "1", "--max-seq-len", "512", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), trained)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    out = tmp_path_factory.mktemp("strong")
    model.save_pretrained(out)
    shutil.copy(trained / "metrics.json", out / "metrics.json")
    return out


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
    export.convert_hf_llama(tiny_llama, base, "f32")
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
    export.convert_hf_llama(tiny_llama, base, "f16")  # an f16 base, as real bases are, merged into f16
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
