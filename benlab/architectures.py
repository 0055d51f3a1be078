"""The base-model architectures ben-lab trains, exports and serves: for each Hugging Face model_type, what the GGUF
side needs to know (llama.cpp's architecture and how convert_hf_to_gguf stores its weights)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benlab.common import BenLabError


@dataclass(frozen=True)
class Architecture:
    gguf_arch: str  # the gguf.MODEL_ARCH member
    # llama.cpp stores the q and k rows of llama models permuted for its rotary embedding (LlamaModel.permute); the
    # others use the NeoX rotary layout, as Hugging Face does, and are stored as they are.
    rotary_permuted: bool = False
    norm_plus_one: bool = False  # Gemma's RMSNorm scales by 1 + w: llama.cpp stores 1 + w
    bpe_pre: str = "default"  # tokenizer.ggml.pre of the family's byte-level BPE tokenizer


ARCHITECTURES = {
    "llama": Architecture("LLAMA", rotary_permuted=True),
    "qwen2": Architecture("QWEN2", bpe_pre="qwen2"),
    "qwen3": Architecture("QWEN3", bpe_pre="qwen2"),
    "phi3": Architecture("PHI3"),  # q/k/v and gate/up stored fused (qkv_proj, gate_up_proj), in llama.cpp too
    "gemma3": Architecture("GEMMA3", norm_plus_one=True),
    "gemma3_text": Architecture("GEMMA3", norm_plus_one=True),
}


def architecture(model_type: str | None) -> Architecture:
    if model_type not in ARCHITECTURES:
        raise BenLabError(f"base model type {model_type!r} is not supported for GGUF export (supported: "
                          f"{', '.join(sorted(ARCHITECTURES))}); train on one of those")
    return ARCHITECTURES[model_type]


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary row order for q/k (convert_hf_to_gguf LlamaModel.permute), on the output axis."""
    out = weights.shape[0]
    return weights.reshape(n_head, 2, out // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)
