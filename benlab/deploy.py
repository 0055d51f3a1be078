"""export_ben_lab.py: adapter -> GGUF adapter + merged GGUF + Modelfile -> Ollama model `ben-lab` (or the exact
commands to run later), and a first answer from llama.cpp when llama-cpp-python is installed."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benlab import export, hf_to_gguf, ollama, samples
from benlab.common import BenLabError, atomic_write, cpu_cores, ensure_writable_dir
from benlab.models import trained_base
from benlab.prompts import SYSTEM_PROMPT

# The first answer of the exported model is a question of the kind it was trained on, about a held-out lab run (an
# SPT cluster state, N=8, depth 12, bias 0.7, noise 0.05, seed 863144883): whether the GGUF kept the skill shows.
CHECK_RUN = {"magnetization": 0.40, "abs_magnetization": 0.43, "x_magnetization": 0.20, "zz_nearest": 0.14,
             "zz_long_range": 0.15, "correlation_length_norm": 0.00, "string_order": 0.43, "stabilizer_mean": 0.86,
             "entanglement_norm": 0.24, "randomness": 0.88}
CHECK_QUESTION = (f"{samples.IDENTIFY_PHASE[0]}\n\n"
                  + samples.feature_table(CHECK_RUN, {"system_size": 8, "depth": 12}, samples.Quotes()))
CHECK_PHASE = "spt_cluster"


def check_verdict(answer: str) -> str:
    """One line on the check answer: right, or a warning naming what it said instead (never "ready" alone)."""
    from benlab.skills import picked_phase

    picked = picked_phase(answer)
    if picked == CHECK_PHASE:
        return f"check passed: the answer names {CHECK_PHASE}, the phase of that run"
    said = f"names {picked}" if picked else "names no phase"
    return (f"warning: check failed: the answer {said}, the run is {CHECK_PHASE}; the model may be undertrained "
            "(eval/report.md says how well it does), or the GGUF was built against another base")


def base_gguf_for(adapter_dir: Path, out_dir: Path, override: str | None) -> Path:
    """The GGUF of the model the adapter was trained on: given, the GGUF it was trained from, or a conversion of
    its local Hugging Face weights (benlab/hf_to_gguf.py)."""
    if override:
        return Path(override)
    base = trained_base(adapter_dir)
    if base.gguf_file:
        return Path(base.path) / base.gguf_file
    model_dir = Path(base.path)
    if not model_dir.is_dir():
        from huggingface_hub import snapshot_download

        try:
            model_dir = Path(snapshot_download(base.path, local_files_only=True))
        except Exception:
            raise BenLabError(f"the base model {base.path} is not on this machine; pass its GGUF with --base-gguf") from None
    converted = out_dir / "ben-lab-base.gguf"
    if not converted.exists() or converted.stat().st_mtime < (model_dir / "config.json").stat().st_mtime:
        print(f"[gguf] converting the base model {model_dir} to {converted}", flush=True)
        hf_to_gguf.convert_hf_model(model_dir, converted)
    return converted


def chat_template_of(adapter_dir: Path) -> str:
    jinja = adapter_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = adapter_dir / "tokenizer_config.json"
    template = json.loads(config.read_text()).get("chat_template") if config.is_file() else None
    if not template:
        raise BenLabError(f"{adapter_dir} has no chat template; retrain with finetune_ben_lab.py")
    return template


def relative(path: Path, start: Path) -> str:
    try:
        return "./" + str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path.resolve())


def llama_cpp_answer(model_path: Path, question: str, adapter: Path | None = None) -> str | None:
    """One chat answer from llama.cpp (llama-cpp-python), or None when it is not installed."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(model_path), lora_path=str(adapter) if adapter else None, n_ctx=1024,
                n_threads=cpu_cores(), verbose=False, seed=0)
    reply = llm.create_chat_completion(
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}],
        temperature=0.2, top_p=0.9, max_tokens=120,
    )
    return reply["choices"][0]["message"]["content"].strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_ben_lab.py",
        description="Turn the trained LoRA adapter into GGUF files (adapter and merged model), write the Modelfile "
        "and register the model in Ollama as ben-lab; without Ollama, print the commands to run later.",
    )
    parser.add_argument("--adapter-dir", type=Path, action="append", dest="adapter_dirs", metavar="DIR",
                        help="PEFT adapter (default ben-lab-lora); give it several times to combine adapters trained on "
                             "the same base into one")
    parser.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                        help="one weight per --adapter-dir, e.g. --weights 0.7 0.3 (default: 1 each)")
    parser.add_argument("--out-dir", type=Path, default=Path("."), help="where the GGUF files and Modelfile go (default: here)")
    parser.add_argument("--base-gguf", default=None, help="GGUF of the base model (default: found from the training run)")
    parser.add_argument("--outtype", choices=export.OUTPUT_TYPES, default="f16", help="adapter tensor type (default %(default)s)")
    parser.add_argument("--merged-type", choices=export.MERGED_TYPES, default="f16",
                        help="type of the merged weights (default %(default)s)")
    parser.add_argument("--ollama-mode", choices=["auto", "adapter", "merged"], default="auto",
                        help="auto: ADAPTER on the base where this Ollama accepts it, else the merged model")
    parser.add_argument("--model-name", default=ollama.MODEL_NAME, help="Ollama model name (default %(default)s)")
    parser.add_argument("--step", choices=["all", "gguf", "install"], default="all",
                        help="gguf: write the GGUF files; install: Modelfile, Ollama and the llama.cpp check; all: both")
    parser.add_argument("--skip-ollama", action="store_true", help="do not call ollama, even if it is installed")
    parser.add_argument("--skip-llama-cpp", action="store_true", help="do not load the result in llama.cpp")
    args = parser.parse_args(argv)
    args.adapter_dirs = args.adapter_dirs or [Path("ben-lab-lora")]
    if args.weights is not None and len(args.weights) != len(args.adapter_dirs):
        parser.error(f"--weights gives {len(args.weights)} numbers for {len(args.adapter_dirs)} --adapter-dir; give one "
                     "weight per adapter")
    return args


def write_gguf(args, out_dir: Path) -> Path:
    """The adapter and merged GGUF files; returns the base GGUF they were built against."""
    started = time.perf_counter()
    adapter = export.load_adapters(args.adapter_dirs, args.weights)  # checks that several share one base, first
    if adapter.sources > 1 or args.weights:
        weights = ", ".join(f"{w:g}" for w in args.weights or [1.0] * adapter.sources)
        print(f"[gguf] combining {adapter.sources} adapter(s) at weight(s) {weights} into one (rank {adapter.rank}: "
              "the ranks side by side)", flush=True)
    base_gguf = base_gguf_for(args.adapter_dirs[0], out_dir, args.base_gguf)
    adapter_gguf, merged_gguf = out_dir / "ben-lab-adapter.gguf", out_dir / "ben-lab.gguf"
    info = export.write_adapter_gguf(adapter, adapter_gguf, args.outtype, base_gguf)
    print(f"[gguf] adapter: {adapter_gguf} ({info['tensors']} tensors, r={info['rank']}, alpha={info['alpha']:g}, "
          f"{args.outtype}) in {time.perf_counter() - started:.1f} s", flush=True)
    step = time.perf_counter()
    merged = export.merge_into_gguf(adapter, base_gguf, merged_gguf, args.merged_type,
                                    chat_template_of(args.adapter_dirs[0]))
    print(f"[gguf] merged model: {merged_gguf} ({merged['merged_tensors']} tensors merged, "
          f"{merged['copied_tensors']} copied, {args.merged_type}) in {time.perf_counter() - step:.1f} s", flush=True)
    return base_gguf


def install(args, out_dir: Path, base_gguf: Path) -> None:
    """Modelfile for the mode this machine supports, `ollama create` (or the commands), a llama.cpp answer."""
    adapter_gguf, merged_gguf = out_dir / "ben-lab-adapter.gguf", out_dir / "ben-lab.gguf"
    if not merged_gguf.is_file():
        raise BenLabError(f"{merged_gguf} not found; run the GGUF step first (export_ben_lab.py without --step install)")
    template = chat_template_of(args.adapter_dirs[0])
    found = None if args.skip_ollama else ollama.find_ollama()
    mode = ollama.choose_mode(args.ollama_mode, found)
    modelfile_path = out_dir / "Modelfile"
    if mode == "adapter":
        text = ollama.modelfile(relative(base_gguf, out_dir), template, adapter=relative(adapter_gguf, out_dir))
    else:
        text = ollama.modelfile(relative(merged_gguf, out_dir), template)
    atomic_write(modelfile_path, text)
    print(f"[ollama] Modelfile ({mode} mode): {modelfile_path}")
    if found is None:
        print("[ollama] Ollama is not installed here, so nothing was registered. Once it is (https://ollama.com), run:\n"
              f"  cd {out_dir.resolve()} && ollama create {args.model_name} -f Modelfile\n  ollama run {args.model_name}")
    else:
        version = ".".join(map(str, found.version)) if found.version else "unknown"
        print(f"[ollama] ollama {version}: creating {args.model_name} ...", flush=True)
        ollama.create(found, modelfile_path, args.model_name)
        answer = ollama.generate(found, CHECK_QUESTION, args.model_name)
        print(f"[ollama] check, a held-out spt_cluster run: {answer[:300]}")
        print(f"[ollama] {check_verdict(answer)}")
        print(f"[ollama] created: ollama run {args.model_name}")
    if not args.skip_llama_cpp:
        answer = llama_cpp_answer(merged_gguf, CHECK_QUESTION)
        if answer is None:
            print("[llama.cpp] llama-cpp-python is not installed; skipping the local check")
        else:
            question = CHECK_QUESTION.replace("\n\n", " ")
            print(f"[llama.cpp] a held-out spt_cluster run: {question}\n[llama.cpp] {answer}")
            print(f"[llama.cpp] {check_verdict(answer)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = ensure_writable_dir(args.out_dir, "--out-dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.step in ("all", "gguf"):
        base_gguf = write_gguf(args, out_dir)
    else:
        base_gguf = base_gguf_for(args.adapter_dirs[0], out_dir, args.base_gguf)
    if args.step in ("all", "install"):
        install(args, out_dir, base_gguf)
    print(f"[done] export in {time.perf_counter() - started:.1f} s")
    return 0
