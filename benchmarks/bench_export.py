"""Export timings and llama.cpp speed: adapter -> GGUF, merge into the base GGUF, then tokens/s in llama.cpp for the
base, base + adapter, and the merged model. Usage (from the repository root):
.venv/bin/python -m benchmarks.bench_export [--adapter-dir ben-lab-lora] [--tokens 64]"""

import argparse
import tempfile
import time
from pathlib import Path

from llama_cpp import Llama

from benlab import deploy, export
from benlab.common import cpu_cores
from benlab.prompts import SYSTEM_PROMPT


def tokens_per_second(model_path: Path, adapter: Path | None, tokens: int) -> float:
    llm = Llama(model_path=str(model_path), lora_path=str(adapter) if adapter else None, n_ctx=512, n_threads=cpu_cores(),
                verbose=False, seed=0)
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "Explain what a TRI of 0.8 means for an Ising run at bias 0.7."}]
    llm.create_chat_completion(messages=messages, max_tokens=4)  # warm-up
    start = time.perf_counter()
    reply = llm.create_chat_completion(messages=messages, max_tokens=tokens, temperature=0.0)
    return reply["usage"]["completion_tokens"] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--adapter-dir", type=Path, default=Path("ben-lab-lora"))
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        base = deploy.base_gguf_for(args.adapter_dir, out, None)
        start = time.perf_counter()
        export.write_adapter_gguf(args.adapter_dir, out / "adapter.gguf", "f16", base)
        print(f"adapter -> GGUF (f16): {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        export.merge_into_gguf(args.adapter_dir, base, out / "merged.gguf", "f16", deploy.chat_template_of(args.adapter_dir))
        print(f"merge into {base.name} (f16): {time.perf_counter() - start:.1f} s")
        for name, model, adapter in (("base", base, None), ("base + adapter", base, out / "adapter.gguf"),
                                     ("merged", out / "merged.gguf", None)):
            print(f"llama.cpp {name:15s}: {tokens_per_second(model, adapter, args.tokens):.1f} tokens/s ({cpu_cores()} threads)")


if __name__ == "__main__":
    main()
