"""demo_ben_lab_lora.py: a walkthrough that runs real, small things (a live experiment, the training sample it
becomes, the LoRA size on the chosen model, the Modelfile), and --chat to talk to ben-lab."""

from __future__ import annotations

import argparse
import json
import random
import sys
from contextlib import ExitStack
from pathlib import Path

from benlab import ollama, samples, tool_samples
from benlab.common import BenLabError, cpu_cores
from benlab.lab_client import LabClient
from benlab.lab_server import LocalLab
from benlab.prompts import SYSTEM_PROMPT


def pause(args) -> None:
    if not args.yes and sys.stdin.isatty():
        input("\n(press Enter for the next step) ")


def walkthrough(args) -> None:
    with ExitStack() as stack:
        client = LabClient(args.api_url)
        if not client.is_up():
            print(f"[1/4] No lab at {args.api_url}; starting a local one for the demo ...", flush=True)
            client = LabClient(stack.enter_context(LocalLab()).url)
        body = {"phase_type": "spt_cluster", "system_size": 10, "depth": 6, "seed": 7}
        print(f"[1/4] A live experiment: POST /run_phase_experiment {json.dumps(body)}")
        result = client.post("/run_phase_experiment", body)
    for name, value in zip(result["feature_names"], result["feature_vector"]):
        print(f"      {name:24s} {value: .3f}")
    pause(args)
    print("\n[2/4] The training samples this experiment becomes: the lab-loop conversation (request, TOOL line, the "
          "lab's JSON, an explanation that quotes it) and an identification question:")
    rng = random.Random(0)
    for sample in (tool_samples.tool_result_sample(rng, "run_phase", body, result, "train"),
                   samples.phase_identification(result, rng)):
        for message in sample["messages"][1:]:
            text = message["content"]
            print(f"  {message['role'] + ':':10s} {text if len(text) < 400 else text[:400] + ' ...'}")
        print()
    pause(args)
    print("[3/4] LoRA on the base model (loading it takes ~20-40 s on a CPU) ...", flush=True)
    lora_size(args.base_model)
    pause(args)
    print("\n[4/4] The Modelfile that registers the model in Ollama as ben-lab:\n")
    print(Path(args.modelfile).read_text() if Path(args.modelfile).is_file() else "(no Modelfile yet: run ./train_and_install.sh)")
    print("Next: ./train_and_install.sh builds it all; chat_with_lab.py --start-lab talks to the result and lets it "
          "run the lab.")


def lora_size(base_model: str | None) -> None:
    import torch
    from peft import get_peft_model

    from benlab.models import load_model, resolve
    from benlab.train import TrainConfig, adapted_modules, lora_config

    base = resolve(base_model)
    config = TrainConfig()
    model = load_model(base, torch.float32)
    model = get_peft_model(model, lora_config(config, model))
    trainable, total = model.get_nb_trainable_parameters()
    print(f"      {base.name}: {total:,} parameters; LoRA r={config.lora_r} on {adapted_modules(model)} "
          f"trains {trainable:,} of them ({100 * trainable / total:.2f}%)")


def questions():
    """Lines typed at a prompt, or piped in."""
    if not sys.stdin.isatty():
        yield from sys.stdin
        return
    while True:
        try:
            yield input("you> ")
        except EOFError:
            return


def chat(args) -> None:
    """Talk to ben-lab: in Ollama when it is installed, else with llama.cpp on the exported GGUF."""
    found = ollama.find_ollama()
    if found is not None:
        print(f"Chatting with {args.model_name} in Ollama (empty line or 'exit' to stop).")
        ask = lambda question: ollama.generate(found, question, args.model_name)  # noqa: E731
    else:
        merged = Path(args.gguf)
        if not merged.is_file():
            raise BenLabError(f"no Ollama and no {merged}; build the model with ./train_and_install.sh")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BenLabError("no Ollama and llama-cpp-python is not installed; run ./scripts/bootstrap.sh") from None
        print(f"Chatting with {merged} in llama.cpp (empty line or 'exit' to stop).")
        llm = Llama(model_path=str(merged), n_ctx=2048, n_threads=cpu_cores(), verbose=False, seed=0)
        history = [{"role": "system", "content": SYSTEM_PROMPT}]

        def ask(question: str) -> str:
            history.append({"role": "user", "content": question})
            reply = llm.create_chat_completion(messages=history, temperature=0.2, top_p=0.9, max_tokens=256)
            answer = reply["choices"][0]["message"]["content"].strip()
            history.append({"role": "assistant", "content": answer})
            return answer

    for line in questions():
        question = line.strip()
        if not question or question in ("exit", "quit"):
            break
        print(f"ben-lab> {ask(question)}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="demo_ben_lab_lora.py",
        description="Walk through the ben-lab pipeline on real, small examples, or chat with the trained model.",
    )
    parser.add_argument("--yes", action="store_true", help="run straight through without pausing")
    parser.add_argument("--chat", action="store_true", help="chat with ben-lab (Ollama if installed, else llama.cpp)")
    parser.add_argument("--api-url", default="http://127.0.0.1:8000", help="lab URL; a local lab is started if none answers")
    parser.add_argument("--base-model", default=None, help="base model for the LoRA size step (default as finetune_ben_lab.py)")
    parser.add_argument("--modelfile", default="Modelfile", help="Modelfile to show (default %(default)s)")
    parser.add_argument("--gguf", default="ben-lab.gguf", help="merged GGUF for --chat without Ollama (default %(default)s)")
    parser.add_argument("--model-name", default=ollama.MODEL_NAME, help="Ollama model name (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.chat:
        chat(args)
    else:
        walkthrough(args)
    return 0
