"""chat_with_lab.py: chat with ben-lab, which runs lab experiments through the TOOL protocol (benlab/tools.py).

The loop is a plain function over a message list: the model replies; a reply whose first line is a TOOL call is
POSTed to the lab and the lab's JSON (or the error) goes back as a user message; the model's next reply is shown.
A backend is one `reply(messages) -> str`: Ollama's /api/chat, or llama.cpp on the merged GGUF.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benlab import tools
from benlab.common import BenLabError, cpu_cores
from benlab.lab_client import LabClient, LabRefused
from benlab.lab_server import LocalLab
from benlab.ollama import MODEL_NAME

DEFAULT_LAB_URL = "http://127.0.0.1:8000"
MAX_TOOL_CALLS = 3
MAX_REPLY_TOKENS = 400
CONTEXT_TOKENS = 8192  # three lab results of ~1,000 tokens each, with room to explain them


class ContextFull(BenLabError):
    """The conversation has outgrown the model's context window."""


def ollama_url() -> str:
    host = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    return host.rstrip("/") if "://" in host else f"http://{host.rstrip('/')}"


class OllamaChat:
    """Ollama's /api/chat, greedy: the Modelfile's template and stop tokens apply; a system message replaces its
    SYSTEM."""

    def __init__(self, model: str, url: str | None = None, timeout: float = 600, max_tokens: int = MAX_REPLY_TOKENS):
        self.model, self.url, self.timeout, self.max_tokens = model, url or ollama_url(), timeout, max_tokens
        self.name = f"Ollama model {model} at {self.url}"

    def available(self) -> bool:
        try:
            tags = requests.get(f"{self.url}/api/tags", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        return any(m.get("name", "").split(":")[0] == self.model for m in tags.get("models", []))

    def __call__(self, messages: list[dict]) -> str:
        body = {"model": self.model, "messages": messages, "stream": False,
                "options": {"temperature": 0, "num_predict": self.max_tokens}}
        try:
            response = requests.post(f"{self.url}/api/chat", json=body, timeout=self.timeout)
        except requests.RequestException:
            raise BenLabError(f"no Ollama answers at {self.url}; start it with `ollama serve` (or set OLLAMA_HOST), "
                              "or chat through llama.cpp with --backend llama-cpp") from None
        if response.status_code == 404:
            raise BenLabError(f"Ollama at {self.url} has no model {self.model}; create it with ./train_and_install.sh "
                              f"or `ollama create {self.model} -f Modelfile`")
        if response.status_code != 200:
            raise BenLabError(f"Ollama at {self.url} answered HTTP {response.status_code}: {response.text[:200]}")
        return response.json()["message"]["content"]


class LlamaCppChat:
    """llama.cpp on a GGUF file (the merged ben-lab.gguf), greedy, with the chat template stored in the file."""

    def __init__(self, gguf: Path, max_tokens: int = MAX_REPLY_TOKENS):
        if not gguf.is_file():
            raise BenLabError(f"no {gguf} to chat with; build it with ./train_and_install.sh (or pass --gguf PATH)")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BenLabError("llama-cpp-python is not installed; run ./scripts/bootstrap.sh") from None
        self.llm = Llama(model_path=str(gguf), n_ctx=CONTEXT_TOKENS, n_threads=cpu_cores(), verbose=False, seed=0)
        self.name = f"llama.cpp on {gguf}"
        self.max_tokens = max_tokens

    def __call__(self, messages: list[dict]) -> str:
        try:
            reply = self.llm.create_chat_completion(messages=messages, temperature=0, max_tokens=self.max_tokens)
        except ValueError as error:  # llama-cpp-python's way of saying the prompt is longer than the context
            raise ContextFull(f"the conversation no longer fits the model's {CONTEXT_TOKENS}-token context ({error}); "
                              "start a new chat") from None
        return reply["choices"][0]["message"]["content"] or ""


def pick_backend(kind: str, model: str, gguf: Path, max_tokens: int = MAX_REPLY_TOKENS):
    if kind in ("auto", "ollama"):
        ollama = OllamaChat(model, max_tokens=max_tokens)
        if kind == "ollama" or ollama.available():
            return ollama
    return LlamaCppChat(gguf, max_tokens)


@dataclass
class Turn:
    """One question's exchange: every reply, every tool call with its result, and the final answer."""

    question: str
    replies: list[str] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    answer: str = ""


def ask(question: str, messages: list[dict], reply, lab: LabClient, say=lambda text: None,
        max_calls: int = MAX_TOOL_CALLS) -> Turn:
    """Put one question to the model, run its tool calls (at most max_calls), and return the exchange. `messages`
    grows with every turn, so the next question has the whole conversation."""
    turn = Turn(question)
    messages.append({"role": "user", "content": question})
    refused: dict[str, str] = {}  # TOOL line -> why it was refused
    while True:
        text = reply(messages).strip()
        messages.append({"role": "assistant", "content": text})
        turn.replies.append(text)
        line = text.split("\n", 1)[0]
        try:
            call, problem = tools.parse_tool_call(text), None
        except tools.ToolError as error:
            call, problem = None, error
        if call is None and problem is None:
            turn.answer = text
            return turn
        if len(turn.calls) >= max_calls:  # broken TOOL lines count too: a model stuck on one must not loop forever
            turn.answer = text
            say(f"[tool] stopped after {max_calls} tool calls for one question")
            return turn
        if line in refused:  # the same error again would only bring the same line back (run 28's chat: four times)
            turn.answer = text
            say(f"[tool] the model sent the refused call again ({refused[line]}); stopped. Ask again naming the "
                "arguments yourself, e.g. \"8 qubits, depth 4\"")
            return turn
        if problem is not None:
            turn.calls.append({"line": line, "ok": False, "error": str(problem)})
            refused[line] = str(problem)
            say(f"[tool] {problem}; sent back to the model")
            result = tools.error_message(str(problem))
        else:
            say(f"[tool] {call.name} {json.dumps(call.args)} -> POST {call.path}")
            try:
                response = lab.post(call.path, call.args)
            except LabRefused as error:
                turn.calls.append({"name": call.name, "args": call.args, "ok": False, "error": str(error)})
                refused[line] = str(error)
                say(f"[tool] {error}; sent back to the model")
                result = tools.error_message(str(error))
            else:
                turn.calls.append({"name": call.name, "args": call.args, "ok": True, "result": response})
                result = tools.result_message(response)
        messages.append({"role": "user", "content": result})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chat_with_lab.py",
        description="Chat with ben-lab. When it needs an experiment it replies TOOL: {...}; this runs it on the lab "
        "and sends the result back. Type exit or quit (or Ctrl-C) to stop.",
    )
    parser.add_argument("--backend", choices=["auto", "ollama", "llama-cpp"], default="auto",
                        help="auto: Ollama when it serves the model, else llama.cpp on --gguf (default %(default)s)")
    parser.add_argument("--model", default=MODEL_NAME, help="Ollama model name (default %(default)s; OLLAMA_HOST sets the server)")
    parser.add_argument("--gguf", type=Path, default=Path("ben-lab.gguf"), help="GGUF for llama.cpp (default %(default)s)")
    parser.add_argument("--api-url", default=os.environ.get("JARVIS_LAB_URL", DEFAULT_LAB_URL),
                        help="the lab (env JARVIS_LAB_URL; default %(default)s)")
    parser.add_argument("--start-lab", action="store_true", help="start a local lab on a free port if none answers")
    parser.add_argument("--system", default=tools.LAB_LOOP_SYSTEM_PROMPT,
                        help="system prompt (default: ben-lab's prompt with the TOOL protocol)")
    asked = parser.add_mutually_exclusive_group()
    asked.add_argument("--once", metavar="QUESTION", help="answer this one question (with its tool calls) and exit")
    asked.add_argument("--questions", metavar="FILE", type=Path,
                       help="answer each line of FILE as its own chat (fresh history, with its tool calls) and exit; "
                       "with --json, one JSON line per question as it is answered")
    parser.add_argument("--json", action="store_true", help="print the whole exchange as JSON")
    parser.add_argument("--max-calls", type=int, default=MAX_TOOL_CALLS, help="tool calls per question (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=MAX_REPLY_TOKENS, help="longest reply in tokens (default %(default)s)")
    args = parser.parse_args(argv)
    for name in ("max_calls", "max_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args


def questions():
    while True:
        try:
            line = input("you> ")
        except EOFError:
            return
        if line.strip() in ("exit", "quit"):
            return
        if line.strip():
            yield line.strip()


def read_questions(path: Path) -> list[str]:
    if not path.is_file():
        raise BenLabError(f"--questions {path}: {'is a folder' if path.is_dir() else 'not found'}; pass a text file "
                          "with one question per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BenLabError(f"--questions {path}: cannot be read as UTF-8 text ({error.__class__.__name__}); pass a "
                          "text file with one question per line") from None
    asked = [line.strip() for line in lines if line.strip()]
    if not asked:
        raise BenLabError(f"--questions {path} has no questions; write one question per line")
    return asked


def answer_each(path: Path, system: str, backend, lab: LabClient, as_json: bool, max_calls: int) -> None:
    """Each question of the file in a chat of its own, printed as soon as it is answered. A question whose chat
    outgrows the context is reported on its line and the next one goes on."""
    for question in read_questions(path):
        if not as_json:
            print(f"you> {question}", flush=True)
        messages = [{"role": "system", "content": system}]
        try:
            turn = ask(question, messages, backend, lab, (lambda text: None) if as_json else print, max_calls)
        except ContextFull as error:
            print(json.dumps({"question": question, "error": str(error)}) if as_json else f"error: {error}", flush=True)
            continue
        print(json.dumps(exchange(backend, lab, messages, [turn])) if as_json else f"ben-lab> {turn.answer}",
              flush=True)


def exchange(backend, lab: LabClient, messages: list[dict], turns: list[Turn]) -> dict:
    return {"backend": backend.name, "lab": lab.url, "messages": messages, "turns": [turn.__dict__ for turn in turns]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.questions:
        read_questions(args.questions)  # a bad file is reported before a model is loaded
    show = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else print
    with ExitStack() as stack:
        lab = LabClient(args.api_url, timeout=120, retries=1)
        if not lab.is_up():
            if not args.start_lab:
                raise BenLabError(f"no lab answers at {args.api_url}; start it with `python jarvis_api.py` (or set "
                                  "--api-url / JARVIS_LAB_URL), or pass --start-lab")
            local = stack.enter_context(LocalLab())
            lab = LabClient(local.url, timeout=120, retries=1)
            show(f"[lab] started a local lab at {local.url}")
        backend = pick_backend(args.backend, args.model, args.gguf, args.max_tokens)
        show(f"[chat] {backend.name}; lab at {lab.url}")
        if args.questions:
            answer_each(args.questions, args.system, backend, lab, args.json, args.max_calls)
            return 0
        messages = [{"role": "system", "content": args.system}]
        turns = []
        for question in ([args.once] if args.once else questions()):
            turn = ask(question, messages, backend, lab, show, args.max_calls)
            turns.append(turn)
            if not args.json:
                print(f"ben-lab> {turn.answer}", flush=True)
        if args.json:
            print(json.dumps(exchange(backend, lab, messages, turns), indent=1))
    return 0
