"""A local Hugging Face model (weights, byte-level BPE tokenizer, chat template) as a base GGUF, for bases that did
not come as GGUF: llama, qwen2, qwen3, phi3 and gemma3, written the way llama.cpp's convert_hf_to_gguf writes them
(names from gguf's tensor map, the hyperparameter keys llama.cpp reads, llama's q/k rows permuted, Gemma's norms
stored as 1 + w, Llama 3's rope scaling as rope_freqs). What that converter does and this one does not (SentencePiece
tokenizers, long-context rope variants, Gemma 3 configurations llama.cpp hard-codes otherwise) is refused in one
line: such a model's GGUF comes from llama.cpp's converter, given to export_ben_lab.py with --base-gguf."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from benlab.architectures import architecture, permute_rows
from benlab.common import BenLabError
from benlab.export import finish

GGUF_INSTEAD = "convert it with llama.cpp's convert_hf_to_gguf.py and pass the file with --base-gguf"


def rope_settings(config: dict, layer_type: str = "full_attention") -> dict:
    """The rope parameters of one layer type: transformers 5 keeps them in rope_parameters (per layer type for
    Gemma 3), older configs in rope_theta / rope_scaling."""
    rope = config.get("rope_parameters") or {}
    if layer_type in rope:
        rope = rope[layer_type]
    settings = dict(config.get("rope_scaling") or {})
    settings.update(rope)
    settings.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    settings["rope_type"] = settings.get("rope_type") or settings.get("type") or "default"
    return settings


def llama3_rope_factors(rope: dict, head_dim: int) -> np.ndarray:
    """Llama 3.1+ scales the rotary frequencies by these factors (convert_hf_to_gguf LlamaModel's rope_freqs)."""
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    freqs = 1.0 / (rope["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factors = []
    for freq in freqs:
        wavelength = 2 * math.pi / freq
        if wavelength < old_context / high:
            factors.append(1.0)
        elif wavelength > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def check_convertible(model_type: str, config: dict, model_dir: Path) -> None:
    """Refuse what llama.cpp would run differently from transformers after a plain conversion."""
    if "text_config" in config:
        raise BenLabError(f"{model_dir}: a multimodal checkpoint (its language model sits in text_config); {GGUF_INSTEAD}")
    tokenizer_file = model_dir / "tokenizer.json"
    spec = json.loads(tokenizer_file.read_text()) if tokenizer_file.is_file() else {}
    model = spec.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback") or "Metaspace" in json.dumps(spec.get("pre_tokenizer")):
        raise BenLabError(f"{model_dir}: only byte-level BPE tokenizers (tokenizer.json) are converted here, and this "
                          f"one is not (SentencePiece-style, as Phi-3's and Gemma's own are); {GGUF_INSTEAD}")
    rope = rope_settings(config)
    allowed = {"llama": ("default", "llama3"), "gemma3": ("default", "linear"), "gemma3_text": ("default", "linear")}
    if rope["rope_type"] not in allowed.get(model_type, ("default",)):
        raise BenLabError(f"{model_dir}: rope type {rope['rope_type']!r} is not converted here; {GGUF_INSTEAD}")
    if model_type in ("gemma3", "gemma3_text"):
        n_layers = config["num_hidden_layers"]
        # llama.cpp's gemma3: every 6th layer global, local layers at rope base 10000, queries scaled by head_dim.
        expected = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layers)]
        local = rope_settings(config, "sliding_attention")
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        if (config.get("layer_types") or expected) != expected or local["rope_theta"] != 10000.0 \
                or config.get("query_pre_attn_scalar", head_dim) != head_dim or config.get("final_logit_softcapping"):
            raise BenLabError(f"{model_dir}: this Gemma 3 configuration (layer pattern, local rope base, query scale "
                              f"or soft-capping) differs from what llama.cpp assumes for gemma3; {GGUF_INSTEAD}")


def convert_hf_model(model_dir: Path, out: Path, out_type: str = "f16") -> dict:
    """Write the Hugging Face model in `model_dir` as a GGUF at `out` (atomically); f16 or f32 matrices."""
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text())
    model_type = config.get("model_type")
    family = architecture(model_type)
    check_convertible(model_type, config, model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise BenLabError(f"{model_dir}: no .safetensors weights to convert")
    weights = {}
    for file in files:
        weights.update(load_file(str(file)))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    arch = gguf.MODEL_ARCH[family.gguf_arch]
    n_layers, n_head = config["num_hidden_layers"], config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads") or n_head
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = rope_settings(config)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(model_dir.name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6 if family.norm_plus_one else 1e-5)))
    writer.add_vocab_size(len(tokenizer))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if out_type == "f16" else gguf.LlamaFileType.ALL_F32)
    if arch == gguf.MODEL_ARCH.LLAMA:
        writer.add_rope_dimension_count(head_dim)
    if arch == gguf.MODEL_ARCH.PHI3:
        writer.add_rope_dimension_count(int(head_dim * rope.get("partial_rotary_factor", 1.0)))
        writer.add_rope_scaling_orig_ctx_len(config.get("original_max_position_embeddings")
                                             or config.get("max_position_embeddings", 4096))
        writer.add_sliding_window(config.get("sliding_window") or 0)
    if arch == gguf.MODEL_ARCH.GEMMA3:
        writer.add_sliding_window(config["sliding_window"])
        if rope["rope_type"] == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(rope["factor"])
    add_bpe_tokenizer(writer, tokenizer, model_dir, family.bpe_pre)
    if rope["rope_type"] == "llama3":
        writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", llama3_rope_factors(rope, head_dim))
    names = gguf.get_tensor_name_map(arch, n_layers)
    for hf_name, tensor in sorted(weights.items()):
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise BenLabError(f"{model_dir}: no GGUF name for tensor {hf_name} in gguf's {arch.name} map")
        data = tensor.astype(np.float32)
        if family.rotary_permuted and hf_name.endswith("self_attn.q_proj.weight"):
            data = permute_rows(data, n_head)
        elif family.rotary_permuted and hf_name.endswith("self_attn.k_proj.weight"):
            data = permute_rows(data, n_head_kv)
        if family.norm_plus_one and hf_name.endswith("norm.weight"):
            data = data + 1
        # Norms, biases and other vectors stay f32, as llama.cpp's converter keeps them.
        if out_type == "f16" and data.ndim == 2:
            data = data.astype(np.float16)
        writer.add_tensor(name, data)
    finish(writer, tmp, out)
    return {"tensors": len(weights), "type": out_type, "architecture": gguf.MODEL_ARCH_NAMES[arch]}


def add_bpe_tokenizer(writer, tokenizer, model_dir: Path, pre: str) -> None:
    """A byte-level BPE tokenizer ('gpt2' in llama.cpp's terms): tokens, their types, merges, special ids, template."""
    import gguf

    model = json.loads((model_dir / "tokenizer.json").read_text())["model"]  # checked by check_convertible
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    tokens = [None] * len(tokenizer)
    for token, index in vocab.items():
        if index < len(tokens):
            tokens[index] = token
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    writer.add_tokenizer_model("gpt2")
    # Llama 3's pre-tokenizer regex has its own name in llama.cpp, as Qwen's has.
    writer.add_tokenizer_pre("llama-bpe" if "<|begin_of_text|>" in vocab else pre)
    writer.add_token_list([t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)])
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model["merges"]])
    for setter, token_id in ((writer.add_bos_token_id, tokenizer.bos_token_id), (writer.add_eos_token_id, tokenizer.eos_token_id),
                             (writer.add_pad_token_id, tokenizer.pad_token_id)):
        if token_id is not None:
            setter(token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
