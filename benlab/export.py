"""From a PEFT LoRA adapter to files llama.cpp and Ollama run, with the `gguf` package (no llama.cpp checkout):

- a GGUF LoRA adapter (general.type=adapter, adapter.type=lora, adapter.lora.alpha; tensors
  blk.N.<name>.weight.lora_a / .lora_b named through gguf's tensor-name map);
- a merged GGUF: the base GGUF with alpha/r * B @ A added to the adapted weights, every other tensor and every
  metadata key (tokenizer included) copied, the chat template added when the base has none.

llama.cpp stores the q and k projections of llama-architecture models with their rows permuted for its rotary
embedding (convert_hf_to_gguf's LlamaModel.permute). The adapter's lora_b, which lives in the output space, gets the
same permutation, so B @ A lines up with the base tensors. Phi-3's fused qkv_proj and gate_up_proj are fused in
llama.cpp too (attn_qkv, ffn_up), so their pairs convert as they are.
"""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benlab.architectures import architecture, permute_rows
from benlab.common import BenLabError
from benlab.models import trained_base

OUTPUT_TYPES = ("f32", "f16", "bf16")
MERGED_TYPES = ("f16", "q8_0")


@dataclass
class Adapter:
    rank: int
    alpha: float
    base_model_type: str
    n_head: int
    n_head_kv: int
    n_layers: int
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # HF weight name -> (A (r, in), B (out, r)), float32
    base_model: dict | None = None  # what it was trained on (metrics.json's base_model): adapters combine on one base
    sources: int = 1  # how many adapters were combined into this one


def damaged_adapter(path: Path, problem: str) -> BenLabError:
    return BenLabError(f"{path} {problem}; the adapter is damaged (a copy cut short?): copy it again or retrain with "
                       "finetune_ben_lab.py")


def load_adapter(adapter_dir: Path) -> Adapter:
    """Read a PEFT adapter and refuse what llama.cpp cannot apply."""
    from safetensors.numpy import load_file

    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise BenLabError(f"{adapter_dir} is not a PEFT adapter (needs adapter_config.json and "
                          "adapter_model.safetensors); train one with finetune_ben_lab.py")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise damaged_adapter(config_path, f"is not valid JSON ({error})") from None
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise BenLabError(f"{config_path}: LoRA rank r must be a whole number of at least 1, got {rank!r}; "
                          "retrain with --lora-r 1 or more")
    refusals = {
        "use_dora": "DoRA adapters",
        "use_rslora": "rsLoRA scaling (alpha/sqrt(r))",
        "rank_pattern": "per-module ranks (rank_pattern)",
        "alpha_pattern": "per-module alphas (alpha_pattern)",
        "modules_to_save": "fully trained modules (modules_to_save)",
    }
    for key, what in refusals.items():
        if config.get(key):
            raise BenLabError(f"{adapter_dir}: llama.cpp cannot apply {what}; retrain without it")
    try:
        tensors = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own SafetensorError for a cut or damaged file
        raise damaged_adapter(weights_path, f"cannot be read ({error})") from None
    if any("lora_embedding" in name or "embed_tokens" in name for name in tensors):
        raise BenLabError(f"{adapter_dir}: llama.cpp cannot apply LoRA on the embeddings; retrain without embed_tokens")
    pairs: dict[str, list] = {}
    for name, tensor in tensors.items():
        if ".lora_A." not in name and ".lora_B." not in name:
            raise BenLabError(f"{adapter_dir}: unexpected tensor {name} (only LoRA A/B pairs can be converted)")
        module = name.split(".lora_")[0].removeprefix("base_model.model.")
        slot = 0 if ".lora_A." in name else 1
        pairs.setdefault(f"{module}.weight", [None, None])[slot] = tensor.astype(np.float32)
    incomplete = [m for m, (a, b) in pairs.items() if a is None or b is None]
    if incomplete:
        raise BenLabError(f"{adapter_dir}: LoRA A/B pair incomplete for {incomplete[0]}")
    wrong_rank = [m for m, (a, b) in pairs.items() if a.shape[0] != rank or b.shape[1] != rank]
    if wrong_rank:
        raise BenLabError(f"{adapter_dir}: {wrong_rank[0]} has rank {pairs[wrong_rank[0]][0].shape[0]}, but "
                          f"adapter_config.json says r={rank}; the adapter's files do not belong together, retrain")
    targets = config.get("target_modules")  # a list of names (a string would be a regular expression)
    # Names are suffixes (q_proj) or, where PEFT resolved all-linear on a small model, whole paths.
    unused = sorted(t for t in targets if not any(f".{m}".endswith(f".{t}.weight") for m in pairs)) if isinstance(targets, list) else []
    if unused:
        raise BenLabError(f"{adapter_dir}: target_modules names {', '.join(unused)}, but the adapter has no weights "
                          "for it (a module this model does not have?); retrain with --target-modules the model has")
    base = base_config(adapter_dir)
    return Adapter(
        rank=rank,
        alpha=float(config["lora_alpha"]),
        base_model_type=base["model_type"],
        n_head=base["num_attention_heads"],
        n_head_kv=base.get("num_key_value_heads") or base["num_attention_heads"],
        n_layers=base["num_hidden_layers"],
        pairs={m: (a, b) for m, (a, b) in pairs.items()},
        # None for an adapter whose metrics.json does not name its base (not written by finetune_ben_lab.py)
        base_model=trained_base(adapter_dir).as_dict()
        if "base_model" in json.loads((adapter_dir / "metrics.json").read_text()) else None,
    )


def load_adapters(adapter_dirs: list[Path], weights: list[float] | None = None) -> Adapter:
    """One adapter, or several combined into one that applies their weighted sum (sum of w * alpha/r * B @ A):
    the A matrices stacked along the rank, each B scaled by w * alpha/r and set side by side, alpha = the summed
    rank so that llama.cpp's alpha/r is 1. Ranks and adapted layers may differ (a layer one adapter leaves alone gets
    zeros in its slot); the base model may not."""
    weights = [1.0] * len(adapter_dirs) if weights is None else weights  # one each: export_ben_lab.py checks
    if not all(np.isfinite(w) for w in weights):
        raise BenLabError(f"--weights {' '.join(map(str, weights))}: every weight must be a finite number, e.g. 0.7 0.3")
    adapters = [load_adapter(d) for d in adapter_dirs]
    if len(adapters) == 1 and weights[0] == 1.0:
        return adapters[0]
    first = adapters[0]

    def base_of(adapter: Adapter) -> tuple:
        trained_on = adapter.base_model or {}
        return (trained_on.get("path"), trained_on.get("gguf_file"), adapter.base_model_type, adapter.n_head,
                adapter.n_head_kv, adapter.n_layers)

    for path, other in zip(adapter_dirs[1:], adapters[1:]):
        if base_of(other) != base_of(first):
            raise BenLabError(f"--adapter-dir {path} was trained on {(other.base_model or {}).get('name')} "
                              f"({other.base_model_type}, {other.n_layers} layers), {adapter_dirs[0]} on "
                              f"{(first.base_model or {}).get('name')} ({first.base_model_type}, {first.n_layers} "
                              "layers); adapters combine only when trained on the same base model")
    shapes = {}
    for adapter in adapters:
        for module, (a, b) in adapter.pairs.items():
            if shapes.setdefault(module, (a.shape[1], b.shape[0])) != (a.shape[1], b.shape[0]):
                raise BenLabError(f"{module} has different shapes in the adapters; they were not trained on one base model")
    pairs = {}
    for module, (n_in, n_out) in sorted(shapes.items()):
        stacked_a, side_by_side_b = [], []
        for adapter, weight in zip(adapters, weights):
            a, b = adapter.pairs.get(module, (np.zeros((adapter.rank, n_in), np.float32),
                                              np.zeros((n_out, adapter.rank), np.float32)))
            stacked_a.append(a)
            side_by_side_b.append(b * (weight * adapter.alpha / adapter.rank))
        pairs[module] = (np.vstack(stacked_a), np.hstack(side_by_side_b).astype(np.float32))
    rank = sum(adapter.rank for adapter in adapters)
    return Adapter(rank=rank, alpha=float(rank), base_model_type=first.base_model_type, n_head=first.n_head,
                   n_head_kv=first.n_head_kv, n_layers=first.n_layers, pairs=pairs, base_model=first.base_model,
                   sources=len(adapters))


def base_config(adapter_dir: Path) -> dict:
    """The base model's architecture, saved by finetune_ben_lab.py in metrics.json (or an HF config.json)."""
    metrics = adapter_dir / "metrics.json"
    if metrics.is_file():
        saved = json.loads(metrics.read_text()).get("model_config")
        if saved:
            return saved
    raise BenLabError(f"{adapter_dir}/metrics.json has no model_config; retrain with this version of finetune_ben_lab.py")


def gguf_pairs(adapter: Adapter) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """GGUF base tensor name -> (A, B) with B permuted where llama.cpp permuted the base."""
    import gguf

    family = architecture(adapter.base_model_type)
    arch = gguf.MODEL_ARCH[family.gguf_arch]
    names = gguf.get_tensor_name_map(arch, adapter.n_layers)
    converted = {}
    for hf_name, (a, b) in adapter.pairs.items():
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        if name is None:
            raise BenLabError(f"no GGUF name for {hf_name} in gguf's {arch.name} tensor map")
        name = name.removesuffix(".weight")
        if family.rotary_permuted and hf_name.endswith("self_attn.q_proj.weight"):
            b = permute_rows(b, adapter.n_head)
        elif family.rotary_permuted and hf_name.endswith("self_attn.k_proj.weight"):
            b = permute_rows(b, adapter.n_head_kv)
        converted[name] = (a, b)
    return converted


def arch_name(adapter: Adapter) -> str:
    import gguf

    return gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[architecture(adapter.base_model_type).gguf_arch]]


def read_base(base_gguf: Path):
    import gguf

    if not base_gguf.is_file():
        raise BenLabError(f"base GGUF {base_gguf} not found")
    try:
        return gguf.GGUFReader(str(base_gguf))
    except Exception as error:  # a truncated or foreign file: say so in one line
        raise BenLabError(f"{base_gguf} is not a readable GGUF file ({error})") from None


def field_value(reader, key: str):
    field = reader.get_field(key)
    return None if field is None else field.contents()


def check_base(reader, adapter: Adapter, pairs: dict, base_gguf: Path) -> None:
    """The adapter must fit the base: same architecture, same layer count, matching tensor shapes."""
    arch = field_value(reader, "general.architecture")
    if arch != arch_name(adapter):
        raise BenLabError(f"{base_gguf} is a {arch} model but the adapter was trained on {arch_name(adapter)}; "
                          "use the base the adapter was trained on")
    blocks = field_value(reader, f"{arch}.block_count")
    if blocks != adapter.n_layers:
        raise BenLabError(f"{base_gguf} has {blocks} layers but the adapter has {adapter.n_layers}; wrong base model")
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}  # ggml order: (in, out)
    for name, (a, b) in pairs.items():
        want = (a.shape[1], b.shape[0])
        if shapes.get(f"{name}.weight") != want:
            raise BenLabError(f"{base_gguf}: tensor {name}.weight has shape {shapes.get(f'{name}.weight')}, the "
                              f"adapter needs {want}; wrong base model")


def check_free_space(writer, out: Path) -> None:
    """Refuse before writing, not halfway: the tensors' bytes plus 1% for metadata must fit on out's disk."""
    needed = int(sum(info.nbytes for shard in writer.tensors for info in shard.values()) * 1.01)
    free = shutil.disk_usage(out.parent).free
    if needed > free:
        raise BenLabError(f"not enough disk space for {out}: it needs {needed / 1e6:.0f} MB, {out.parent} has "
                          f"{free / 1e6:.0f} MB free; free some space or write elsewhere with --out-dir")


def finish(writer, tmp: Path, out: Path) -> None:
    """Write the GGUF to its temporary name, then rename it into place: no half-written file under `out`, and an
    earlier `out` stays as it was when the disk fills up."""
    check_free_space(writer, out)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(out)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise BenLabError(f"the disk filled up while writing {out}; free some space or write elsewhere with "
                          "--out-dir (the previous file, if any, is unchanged)") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_adapter_gguf(adapter: Adapter | Path, out: Path, out_type: str = "f16", base_gguf: Path | None = None) -> dict:
    """Write the adapter (or the PEFT adapter folder) as a GGUF LoRA adapter at `out` (atomically)."""
    import gguf

    if out_type not in OUTPUT_TYPES:
        raise BenLabError(f"--outtype {out_type}: use one of {', '.join(OUTPUT_TYPES)}")
    adapter = adapter if isinstance(adapter, Adapter) else load_adapter(adapter)
    pairs = gguf_pairs(adapter)
    if base_gguf is not None:
        check_base(read_base(base_gguf), adapter, pairs, base_gguf)
    dtype = {"f32": np.float32, "f16": np.float16, "bf16": np.float32}[out_type]
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch_name(adapter))
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, adapter.alpha)
    for name, (a, b) in sorted(pairs.items()):
        for suffix, tensor in ((".weight.lora_a", a), (".weight.lora_b", b)):
            if out_type == "bf16":
                writer.add_tensor(name + suffix, gguf.quants.quantize(tensor, gguf.GGMLQuantizationType.BF16),
                                  raw_dtype=gguf.GGMLQuantizationType.BF16)
            else:
                writer.add_tensor(name + suffix, np.ascontiguousarray(tensor, dtype=dtype))
    finish(writer, tmp, out)
    return {"tensors": 2 * len(pairs), "rank": adapter.rank, "alpha": adapter.alpha, "type": out_type}


def merge_into_gguf(adapter: Adapter | Path, base_gguf: Path, out: Path, out_type: str = "f16",
                    chat_template: str | None = None) -> dict:
    """Write base + alpha/r * B @ A as one GGUF. Adapted tensors are dequantized, merged and stored as `out_type`;
    every other tensor keeps its bytes and type; every metadata key is copied."""
    import gguf

    if out_type not in MERGED_TYPES:
        raise BenLabError(f"--merged-type {out_type}: use one of {', '.join(MERGED_TYPES)}")
    adapter = adapter if isinstance(adapter, Adapter) else load_adapter(adapter)
    pairs = gguf_pairs(adapter)
    reader = read_base(base_gguf)
    check_base(reader, adapter, pairs, base_gguf)
    arch = field_value(reader, "general.architecture")
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == gguf.Keys.General.ARCHITECTURE:
            continue  # the header and architecture are written by GGUFWriter itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), value_type, sub_type=sub_type)
    if chat_template and field_value(reader, gguf.Keys.Tokenizer.CHAT_TEMPLATE) is None:
        writer.add_string(gguf.Keys.Tokenizer.CHAT_TEMPLATE, chat_template)
    scale = adapter.alpha / adapter.rank
    target = gguf.GGMLQuantizationType.F16 if out_type == "f16" else gguf.GGMLQuantizationType.Q8_0
    merged = 0
    for tensor in reader.tensors:
        pair = pairs.get(tensor.name.removesuffix(".weight"))
        if pair is None:
            writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
            continue
        a, b = pair
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        weight = weight.reshape(b.shape[0], a.shape[1]) + scale * (b @ a)
        data = weight.astype(np.float16) if target == gguf.GGMLQuantizationType.F16 else gguf.quants.quantize(weight, target)
        writer.add_tensor(tensor.name, data, raw_dtype=target)
        merged += 1
    finish(writer, tmp, out)
    return {"merged_tensors": merged, "copied_tensors": len(reader.tensors) - merged, "type": out_type}
