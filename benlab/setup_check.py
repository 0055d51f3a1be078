"""test_ben_lab_setup.py: can this machine run the pipeline? A pass/warn/fail table (or --json), exit code 1
only when a step the user asked for cannot run."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from benlab.common import BenLabError, ensure_writable_dir, nearest_existing
from benlab.lab_server import REPO_ROOT

STEPS = ("data", "train", "export", "ollama")
PACKAGES = ("torch", "transformers", "peft", "datasets", "accelerate", "gguf", "fastapi", "uvicorn", "numpy",
            "requests")
SCRIPTS = ("train_and_install.sh", "run_tests.sh", "scripts/bootstrap.sh", "jarvis_api.py",
           "generate_lab_training_data.py", "finetune_ben_lab.py", "export_ben_lab.py", "evaluate_ben_lab.py",
           "demo_ben_lab_lora.py", "test_ben_lab_setup.py")


@dataclass
class Check:
    name: str
    status: str  # "pass", "warn" or "fail"
    detail: str
    needed_for: tuple[str, ...] = ()


def python_check() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", "pass" if ok else "fail", sys.version.split()[0] + ("" if ok else ": 3.10+ needed"), STEPS)


def package_checks() -> list[Check]:
    checks = []
    for name in PACKAGES:
        try:
            checks.append(Check(f"package {name}", "pass", importlib.metadata.version(name), STEPS))
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(f"package {name}", "fail", "missing: run ./scripts/bootstrap.sh", STEPS))
    return checks


def device_check() -> Check:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Check("torch device", "pass", f"CUDA {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                     f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}, {torch.cuda.device_count()} GPU(s)")
    return Check("torch device", "warn", f"CPU only ({os.cpu_count()} cores): the embedded SmolLM2-135M trains in "
                 "about 15 min; a 1B model would take hours", ("train",))


def resources_check(path: Path) -> list[Check]:
    import psutil

    try:
        ensure_writable_dir(path, "--out-dir")
        folder = Check("output folder", "pass", f"{path} can be written", ("data", "train", "export"))
    except BenLabError as error:
        folder = Check("output folder", "fail", str(error), ("data", "train", "export"))
    existing = nearest_existing(path)
    free_disk = shutil.disk_usage(existing).free / 2**30
    ram = psutil.virtual_memory().available / 2**30
    return [
        folder,
        Check("free disk", "pass" if free_disk >= 2 else "fail",
              f"{free_disk:.1f} GiB free at {existing} (about 2 GiB needed: GGUF files and checkpoints)", ("train", "export")),
        Check("free RAM", "pass" if ram >= 5 else "warn",
              f"{ram:.1f} GiB available (SmolLM2 training peaks at about 4.7 GiB)", ("train",)),
    ]


def lab_check(url: str, try_start: bool) -> Check:
    from benlab.lab_client import LabClient
    from benlab.lab_server import LocalLab

    if LabClient(url).is_up():
        return Check("lab API", "pass", f"running at {url}", ("data",))
    if not try_start:
        return Check("lab API", "warn", f"not running at {url}; the data step starts its own (--start-lab)", ("data",))
    try:
        with LocalLab() as lab:
            return Check("lab API", "pass", f"not running at {url}, but a local lab starts ({lab.url})", ("data",))
    except Exception as error:
        return Check("lab API", "fail", f"cannot start a local lab: {error}", ("data",))


def base_model_check(spec: str | None) -> Check:
    from benlab.models import resolve

    try:
        base = resolve(spec)
    except Exception as error:
        return Check("base model", "fail", str(error), ("train",))
    return Check("base model", "pass", f"{base.name} ({base.source}): {base.reason}", ("train",))


def gguf_check() -> Check:
    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_tensor("check", np.arange(4, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        ok = list(gguf.GGUFReader(str(path)).tensors[0].data) == [0, 1, 2, 3]
    return Check("gguf writer", "pass" if ok else "fail", f"gguf {importlib.metadata.version('gguf')}: wrote and read "
                 "back a GGUF file" if ok else "written file did not read back", ("export",))


def llama_cpp_check() -> Check:
    try:
        version = importlib.metadata.version("llama-cpp-python")
        import llama_cpp  # noqa: F401  (the compiled library must load, not just be listed)
    except Exception as error:
        return Check("llama-cpp-python", "warn", f"not usable ({type(error).__name__}); the local llama.cpp check and "
                     "demo --chat need it: run ./scripts/bootstrap.sh (compiles it once, ~8 min)")
    return Check("llama-cpp-python", "pass", version)


def ollama_check() -> Check:
    from benlab.ollama import find_ollama

    found = find_ollama()
    if found is None:
        return Check("ollama", "warn", "not installed: the export writes the GGUF files and Modelfile and prints the "
                     "commands to run later; chat with demo_ben_lab_lora.py --chat meanwhile", ("ollama",))
    version = ".".join(map(str, found.version)) if found.version else "unknown version"
    mode = "accepts ADAPTER" if found.accepts_adapter else "rejects ADAPTER: the merged model will be used"
    return Check("ollama", "pass", f"{found.path} {version}, {mode}")


def scripts_check() -> Check:
    not_executable = [s for s in SCRIPTS if not os.access(REPO_ROOT / s, os.X_OK)]
    if not_executable:
        return Check("scripts", "fail", f"not executable: {', '.join(not_executable)} (chmod +x them)", STEPS)
    return Check("scripts", "pass", f"{len(SCRIPTS)} entry points executable")


def run_checks(args) -> list[Check]:
    checks = [python_check(), *package_checks(), scripts_check()]
    if any(c.status == "fail" for c in checks):
        return checks  # the rest imports those packages
    checks += [device_check(), *resources_check(args.out_dir), lab_check(args.api_url, args.start_lab),
               base_model_check(args.base_model), gguf_check(), llama_cpp_check(), ollama_check()]
    return checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="test_ben_lab_setup.py",
        description="Check this machine before training: Python and packages, CPU/GPU, disk and RAM, the lab, the "
        "base model, GGUF writing, llama.cpp and Ollama. Exits 1 only if a step you asked for cannot run.",
    )
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"steps you plan to run, comma-separated from {','.join(STEPS)} (default: all)")
    parser.add_argument("--base-model", default=None, help="as finetune_ben_lab.py --base-model")
    parser.add_argument("--api-url", default=os.environ.get("JARVIS_LAB_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--no-start-lab", dest="start_lab", action="store_false",
                        help="do not try starting a local lab when none is running")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT, help="where artifacts will go (for the disk check)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    args = parser.parse_args(argv)
    args.steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"--steps: unknown step {unknown[0]!r}; choose from {', '.join(STEPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = run_checks(args)
    blocking = [c for c in checks if c.status == "fail" and set(c.needed_for) & set(args.steps)]
    if args.json:
        print(json.dumps({"checks": [asdict(c) for c in checks], "ok": not blocking}, indent=2))
    else:
        marks = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{marks[c.status]}  {c.name:{width}s}  {c.detail}")
        print("\nready for: " + ", ".join(args.steps) if not blocking else
              f"\nnot ready: {', '.join(c.name for c in blocking)} (see above)")
    return 1 if blocking else 0
