"""LoRA fine-tuning of a causal LM on the lab's chat samples (finetune_ben_lab.py).

Reads top to bottom like a torchtune recipe: settings, base model and tokenizer, data, LoRA, train, save. What
keeps it fast on a laptop CPU:
- prompts are rendered with the base tokenizer's own chat template, so training sees the format Ollama and
  llama.cpp apply at inference; the loss covers the assistant's tokens only;
- batches are grouped by length and padded only to their longest sample (no fixed 1024-token padding);
- logits (a 49k-49k x 576 matmul per token for SmolLM2, 128k for Llama 3) are computed only from the first
  position that has a label, not for the prompt.
- `--lora-layers top-half` adapts only the upper decoder layers: nothing below them trains, so backpropagation
  stops there.
Runs unchanged under `accelerate launch` (Trainer handles the processes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benlab import general_subspace, grounding
from benlab.common import BenLabError, atomic_write, ensure_writable_dir
from benlab.general import (REPLAY_ANSWERS, REPLAY_PROMPTS, answer_clause, does_as_asked, first_sentence,
                            has_answer, repeats_itself)
from benlab.models import BaseModel, ensure_chat_template, load_model, load_tokenizer, resolve
from benlab.prompts import SYSTEM_PROMPT
from benlab.tool_samples import LOOP_SHARE, loop_prompt

DEFAULT_DATA = ("data/lab_instructions.jsonl", "data/lab_doc_instructions.jsonl")  # the lab's runs, then its docs
MAX_CHARS_PER_TOKEN = 16  # JSON escapes included, no tokenizer here packs more characters into a token
MAX_EVAL_SAMPLES = 32  # held-out loss during training; evaluate_ben_lab.py scores the whole held-out file
# PEFT's "all-linear": every linear layer but the output head, whatever the architecture calls them (q/k/v/o and
# gate/up/down for llama, qwen and gemma; Phi-3's fused qkv_proj and gate_up_proj).
ALL_LINEAR = "all-linear"
TOP_HALF, ALL_LAYERS = "top-half", "all"  # --lora-layers, besides a number N (the top N)
DECODER_LAYER = re.compile(r"\.layers\.(\d+)\.")  # the decoder stack's name in llama, qwen, phi3 and gemma3


@dataclass
class TrainConfig:
    """One field per command-line flag; the resolved values are saved in metrics.json."""

    data: list[str] = field(default_factory=lambda: list(DEFAULT_DATA))
    eval_data: str | None = None
    base_model: str | None = None
    output_dir: str = "ben-lab-lora"
    epochs: float = 1.0
    max_steps: int = -1
    # One sample per update: a CPU-sized run is ~300 updates, and the identification rule is learned only with that
    # many (batch 8: 38 updates, 41%; batch 2: 155 updates, 80%; batch 1: 97-100% on held-out runs). On a GPU, raise
    # --batch-size for throughput.
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-3
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # dropout would copy every adapted layer's input: memory and time for little gain
    target_modules: list[str] = field(default_factory=lambda: [ALL_LINEAR])
    # Every decoder layer. top-half stops backpropagation halfway down (1.6x the tokens/s on 2 cores, fp32), but the
    # default run's held-out loss was 0.041 instead of 0.023.
    lora_layers: str = ALL_LAYERS
    # Lab-loop conversations carry the lab's raw JSON: a /replay_drift result alone is ~900 tokens.
    max_seq_len: int = 1536
    general_replay: int = len(REPLAY_PROMPTS)
    # Each kept replay answer is trained this many times. Twice (run 64) kept fewer probes, 67 of 84 against 71, and
    # its misses copied replay answers to neighbouring questions ("A century is approximately 1000 years." from the
    # millennium's, "The largest land animal is the Blue Whale." from the largest mammal's).
    replay_copies: int = 1
    # The share of the general replay's input energy whose directions LoRA's A may not read (0: off). 0.9 kept 75 of
    # 84 probes after 400 updates where 0 kept 61 (0.99 also 75, held-out loss 0.55 against 0.41);
    # benlab/general_subspace.py.
    keep_general: float = 0.9
    seed: int = 0
    resume: bool = False
    gradient_checkpointing: bool = False
    precision: str = "auto"
    save_steps: int = 50


# ---------------------------------------------------------------- data


def read_chats(path: str, max_chars: int | None = None) -> list[list[dict]]:
    """Chat message lists from a JSONL file of samples (`messages`, or `instruction`/`input`/`output`). A line
    longer than `max_chars` is skipped with a warning before it is parsed or tokenized (a token is at least one
    character, so such a sample could only be cut to its first --max-seq-len tokens)."""
    file = Path(path)
    if not file.is_file():
        raise BenLabError(f"data file {path} not found; create it with generate_lab_training_data.py --start-lab")
    chats = []
    for number, raw in enumerate(file.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BenLabError(f"{path} line {number}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                              f"{error.start + 1}); save the file as UTF-8 or regenerate it") from None
        if not line.strip():
            continue
        if max_chars is not None and len(line) > max_chars:
            print(f"warning: {path} line {number}: a sample of {len(line):,} characters cannot fit in --max-seq-len "
                  f"tokens; skipped", file=sys.stderr)
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BenLabError(f"{path} line {number}: not valid JSON ({error.msg}); fix or regenerate the file") from None
        chats.append(row_to_chat(row, f"{path} line {number}"))
    if not chats:
        raise BenLabError(f"data file {path} is empty; regenerate it with generate_lab_training_data.py")
    return chats


def row_to_chat(row: dict, where: str) -> list[dict]:
    if not isinstance(row, dict):
        raise BenLabError(f"{where}: expected a JSON object with 'messages' or 'instruction' and 'output'")
    if "messages" in row:
        messages = row["messages"]
        ok = isinstance(messages, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages)
        if not ok or not messages or messages[-1]["role"] != "assistant":
            raise BenLabError(f"{where}: 'messages' must be a list of {{role, content}} ending with the assistant's answer")
        flags = [m["train"] for m in messages if "train" in m]
        if any(not isinstance(flag, bool) for flag in flags) or messages[-1].get("train") is False:
            raise BenLabError(f"{where}: \"train\" must be true or false, and the last answer is always trained "
                              "(mark only an earlier assistant turn \"train\": false)")
        return messages
    missing = [k for k in ("instruction", "output") if not isinstance(row.get(k), str) or not row.get(k)]
    if missing:
        raise BenLabError(f"{where}: missing field(s) {', '.join(missing)} (and no 'messages')")
    user = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user},
            {"role": "assistant", "content": row["output"]}]


def encode(chat: list[dict], tokenizer, max_seq_len: int) -> dict | None:
    """Token ids of the whole chat and labels that are -100 except on the assistant's turns (every one of them: a
    lab-loop conversation trains the TOOL line and the explanation), bar a turn marked `"train": false` (a refused
    TOOL line: context for the correction after it, not something to learn). Each turn's prompt is the chat
    template applied to the earlier turns with the generation prompt, exactly what inference sees."""
    ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, message in enumerate(chat):
        if message["role"] != "assistant" or message.get("train") is False:
            continue
        prompt = tokenizer.apply_chat_template(chat[:i], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(chat[: i + 1], tokenize=False)
        if not prompt.startswith(rendered) or not full.startswith(prompt):
            raise BenLabError("the chat template renders earlier turns differently inside the full chat; use another base model")
        prompt_ids = tokenizer(prompt[len(rendered):], add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        ids += prompt_ids + answer_ids
        labels += [-100] * len(prompt_ids) + answer_ids
        rendered = full
    ids, labels = ids[:max_seq_len], labels[:max_seq_len]
    if all(label == -100 for label in labels):
        return None  # no answer, or every answer was cut off: nothing to learn from this sample
    return {"input_ids": ids, "labels": labels, "length": len(ids)}


def build_dataset(chats: list[list[dict]], tokenizer, max_seq_len: int):
    from datasets import Dataset

    rows = [r for r in (encode(c, tokenizer, max_seq_len) for c in chats) if r is not None]
    if not rows:
        raise BenLabError(f"no sample fits in --max-seq-len {max_seq_len} tokens; raise it")
    return Dataset.from_list(rows), len(chats) - len(rows)


def pad_batch(features: list[dict], pad_id: int) -> dict:
    """Pad to the longest sample of this batch only; padding gets label -100 and attention 0."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), -100, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        labels[i, :n] = torch.tensor(f["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# ---------------------------------------------------------------- training


def answer_only_loss(model, inputs: dict, num_items_in_batch=None):
    """Cross-entropy of the next token on the answer tokens, with logits computed only at the positions that
    predict one (`logits_to_keep` as indices): the lm_head skips the prompt and, in a lab-loop conversation, the
    lab's JSON between the two answers. Inputs must be right-padded."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    keep = (labels[:, 1:] != -100).any(dim=0).nonzero().squeeze(-1)  # positions whose next token is a label
    if len(keep) == 0:
        keep = torch.tensor([labels.shape[1] - 2])
    # Batches are right-padded, so under causal attention no real token ever sees a pad: the mask can be left out,
    # which keeps attention on the fast causal path (pad positions compute garbage that no label looks at).
    logits = model(input_ids=inputs["input_ids"], logits_to_keep=keep).logits
    targets = labels[:, keep + 1]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-100, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
    return loss / count


REPLAY_FILE = "general_replay.jsonl"
REPLAY_TOKENS = 80
# An everyday answer that mentions these has dragged the lab in (no replay prompt mentions them).
LAB_WORDS = re.compile(r"jarvis|ben's lab|\blab\b|laborator", re.IGNORECASE)
PLAIN_ASSISTANT_PROMPT = "You are a helpful assistant."


def adapted_layers(choice: str, n_layers: int) -> list[int]:
    """The decoder layers --lora-layers names: all, the top half, or the top N."""
    if choice == ALL_LAYERS:
        return list(range(n_layers))
    count = (n_layers + 1) // 2 if choice == TOP_HALF else int(choice) if choice.isdigit() else 0
    if not 1 <= count <= n_layers:
        raise BenLabError(f"--lora-layers {choice}: this model has {n_layers} decoder layers; give {TOP_HALF}, "
                          f"{ALL_LAYERS} or a number from 1 to {n_layers}")
    return list(range(n_layers - count, n_layers))


def lora_config(config: TrainConfig, model):
    """PEFT's LoRA settings for `model`: config.target_modules on the layers config.lora_layers names. PEFT takes a
    layer subset only with a list of module names, so all-linear is then resolved here: every linear layer's name
    inside the decoder layers (the output head is outside them)."""
    import torch
    from peft import LoraConfig

    n_layers = model.config.get_text_config().num_hidden_layers
    layers = adapted_layers(config.lora_layers, n_layers)
    targets = ALL_LINEAR if config.target_modules == [ALL_LINEAR] else config.target_modules
    subset = {}
    if len(layers) < n_layers:
        subset = {"layers_to_transform": layers, "layers_pattern": "layers"}
        if targets == ALL_LINEAR:
            targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                              if isinstance(module, torch.nn.Linear) and DECODER_LAYER.search(name)})
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none", **subset)


def adapted_modules(model) -> str:
    """Which layers LoRA adapts: the kinds (all-linear resolved for this architecture: q_proj, ..., or qkv_proj, ...)
    and, when not all, which decoder layers."""
    config = model.peft_config["default"]
    kinds = ",".join(sorted({name.rsplit(".", 1)[-1] for name in config.target_modules}))
    layers = config.layers_to_transform
    if not layers:
        return kinds
    n_layers = model.get_base_model().config.get_text_config().num_hidden_layers
    return f"{kinds} of decoder layers {layers[0]}-{layers[-1]} (the top {len(layers)} of {n_layers})"


def skip_lora_input_casts(model) -> int:
    """Stop PEFT casting each LoRA layer's input to the fp32 adapter weights. Under autocast the product runs in
    bf16/fp16 whatever the input, so that cast only copied the activations twice (to fp32, then back for the matmul)
    in every adapted layer, forward and backward; the result is bit for bit the same. Returns the layers changed."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [module for module in model.modules() if isinstance(module, BaseTunerLayer)]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    return len(layers)


def general_replay(model, tokenizer, count: int, output: Path) -> list[list[dict]]:
    """The base model's own greedy answers to everyday prompts (benlab/general.py), under the training system
    prompt: training on them keeps the adapter from moving the model where the lab data says nothing. (Answers
    written under a plain assistant prompt instead kept fewer of the probes: 65.8% against 75.6%.) Under the lab's
    prompt SmolLM2 drags 14 of the 100 everyday answers into the lab ("The Jarvis-2v organ is a specialized
    device designed to assist in breathing") and gets some facts wrong ("A soccer team consists of 12 players");
    trained on, those teach the adapter the same. So a prompt whose answer drags the lab in or lacks its known
    answer (general.REPLAY_ANSWERS) in its first sentence is asked again under a plain assistant prompt (the sample
    keeps the lab's), and dropped if that answer is no better. A reply to a question with a known answer is that
    first sentence: run 35 kept "The International System of Units (SI) is based on the International System of
    Units ..." before the kelvin and answered the probe "What is the SI unit of time?" with it; run 43 kept "To find
    9 times 3, we can use the formula ... This is a fundamental concept in mathematics, and it's used extensively in
    various fields, including ..." before the 27 and answered "How many days are in a week?" with "A day is a
    fundamental concept in mathematics, and it's used extensively in various fields, includin"; and it stops where an
    aside after the answer begins, since the asides invent (general.answer_clause). A reply that loops, writes a
    false sum or does not do what an instruction asked is asked again as well. Any other reply cut at REPLAY_TOKENS
    ends at its last full sentence. Saved beside the adapter for inspection."""
    from tqdm import tqdm

    from benlab.generation import generate_replies

    def ask(system: str, prompts: list[str], bar) -> list[str]:
        chats = [[{"role": "system", "content": system}, {"role": "user", "content": prompt},
                  {"role": "assistant", "content": ""}] for prompt in prompts]
        replies = generate_replies(model, tokenizer, chats, REPLAY_TOKENS, bar=bar)
        return [reply[: max(reply.rfind(mark) for mark in ".!?") + 1] or reply for reply in replies]

    def taught(prompt: str, reply: str) -> str:
        """What is trained on: a known answer's clause of the first sentence, any other reply whole."""
        return answer_clause(first_sentence(reply), REPLAY_ANSWERS[prompt]) if prompt in REPLAY_ANSWERS else reply

    def fit(prompt: str, reply: str) -> bool:
        text = taught(prompt, reply)
        return (bool(reply) and not LAB_WORDS.search(reply) and not repeats_itself(text)
                and not grounding.false_arithmetic(text) and does_as_asked(prompt, text)
                and (prompt not in REPLAY_ANSWERS or has_answer(text, REPLAY_ANSWERS[prompt])))

    prompts = list(REPLAY_PROMPTS[:count])
    with tqdm(total=len(prompts), desc="base answers", unit="prompt") as bar:
        replies = dict(zip(prompts, ask(SYSTEM_PROMPT, prompts, bar)))
        again = [prompt for prompt, reply in replies.items() if not fit(prompt, reply)]
        bar.total += len(again)
        bar.refresh()
        replies.update(zip(again, ask(PLAIN_ASSISTANT_PROMPT, again, bar)))
    kept = [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt},
             {"role": "assistant", "content": taught(prompt, reply)}]
            for prompt, reply in replies.items() if fit(prompt, reply)]
    for i in range(LOOP_SHARE - 1, len(kept), LOOP_SHARE):  # and some under a TOOL-protocol prompt: run 53 answered
        kept[i][0]["content"] = loop_prompt(i // LOOP_SHARE)  # "What is 7 times 6?" there with a replay-drift sweep
    output.mkdir(parents=True, exist_ok=True)
    atomic_write(output / REPLAY_FILE, "".join(json.dumps({"messages": c}) + "\n" for c in kept))
    return kept


# What Trainer writes into a checkpoint folder; a run killed while saving leaves the folder without some of them.
CHECKPOINT_FILES = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")


def last_complete_checkpoint(folder: Path, say=print) -> str | None:
    """The checkpoint with the highest step that holds every file of CHECKPOINT_FILES; incomplete ones are named."""
    numbered = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    for candidate in sorted(numbered, key=lambda p: int(p.name.rsplit("-", 1)[-1]), reverse=True):
        missing = [name for name in CHECKPOINT_FILES if not (candidate / name).is_file()]
        if not missing:
            return str(candidate)
        say(f"[train] skipping {candidate}: incomplete (no {', '.join(missing)}), left by a run stopped while saving it")
    return None


def make_trainer_class():
    from transformers import Trainer

    class AnswerOnlyTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = answer_only_loss(model, inputs, num_items_in_batch)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                # num_items_in_batch counts every process's answer tokens, and DDP averages the gradients over the
                # processes: without this the loss (and gradient) of N processes is 1/N of one process's
                loss = loss * self.accelerator.num_processes
            return (loss, {}) if return_outputs else loss

    return AnswerOnlyTrainer


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): without it bf16 is emulated and slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(re.findall(r"\w+", cpuinfo))
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def precision_settings(choice: str, cuda: bool | None = None, cuda_bf16: bool | None = None,
                       cpu_bf16: bool | None = None) -> tuple[str, dict]:
    """(name, TrainingArguments flags). auto: bf16 on GPUs that support it, fp16 on older GPUs; on a CPU bf16 where
    it has native bf16, else fp32. bf16 and fp16 are autocast: the LoRA weights and the optimizer stay fp32."""
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if choice == "auto":
        if cuda:
            choice = "bf16" if (torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16) else "fp16"
        else:
            choice = "bf16" if (cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16) else "fp32"
    if choice == "fp16" and not cuda:
        raise BenLabError("--precision fp16 needs a CUDA GPU; use fp32 (or bf16) on CPU")
    return choice, {"bf16": choice == "bf16", "fp16": choice == "fp16"}


class GracefulStop:
    """First Ctrl-C (or kill): finish the current step, save a checkpoint, stop. Second: stop at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        self.previous = {number: signal.signal(number, self.handle) for number in self.SIGNALS}
        return self

    def handle(self, *_):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: saving a checkpoint after this step (press Ctrl-C again to stop without saving)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def make_callbacks(stop: GracefulStop):
    from transformers import TrainerCallback

    class StopOnRequest(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop.requested:
                control.should_save = True
                control.should_training_stop = True
            return control

    return [StopOnRequest()]


def peak_memory_mb() -> dict:
    import torch

    usage = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        usage["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return usage


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="training loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on answer tokens")
    ax.set_title("ben-lab LoRA fine-tuning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train(config: TrainConfig) -> dict:
    import torch
    from accelerate import PartialState
    from peft import get_peft_model
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    # cpu=True where there is no GPU: launched by torchrun / accelerate on CPUs it then joins the gloo process group
    # now, so only the main process reports (a plain PartialState() sees no GPU, reports "one process" here, and
    # every process printed everything).
    state = PartialState(cpu=not torch.cuda.is_available())
    say = print if state.is_main_process else (lambda *a, **k: None)
    started = time.perf_counter()
    set_seed(config.seed)
    output = Path(config.output_dir)
    checkpoints = output / "checkpoints"
    resume_from = None
    if config.resume:
        resume_from = last_complete_checkpoint(checkpoints, say) if checkpoints.is_dir() else None
        if resume_from is None:
            raise BenLabError(f"--resume: no checkpoint in {checkpoints}; run without --resume to start training")

    # Data and the output folder first: a bad file or a folder that cannot be written fails in a second, before the
    # model loads.
    ensure_writable_dir(output, "--output-dir")
    # A sample over MAX_CHARS_PER_TOKEN characters per token of --max-seq-len is skipped unread: tokenizing a
    # 50 MB line only to cut it would take gigabytes.
    max_chars = MAX_CHARS_PER_TOKEN * config.max_seq_len
    chats = [chat for path in config.data for chat in read_chats(path, max_chars)]
    eval_chats = read_chats(config.eval_data, max_chars) if config.eval_data else []

    base: BaseModel = resolve(config.base_model)
    say(f"[model] {base.name} ({base.source}): {base.reason}")
    precision, precision_flags = precision_settings(config.precision)
    say(f"[model] loading in {precision} on {'CUDA' if torch.cuda.is_available() else 'CPU'} (a 135M model takes ~15-30 s on CPU)")
    load_started = time.perf_counter()
    tokenizer = load_tokenizer(base)
    model = load_model(base, torch.float32 if precision == "fp32" else getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[precision]))
    template_source = ensure_chat_template(tokenizer, model.config.model_type)
    say(f"[model] loaded in {time.perf_counter() - load_started:.1f} s; chat template: {template_source}")
    adapted_layers(config.lora_layers, model.config.get_text_config().num_hidden_layers)  # a bad --lora-layers fails now

    replay = []
    if config.general_replay:
        model.to(state.device)  # this process's device (Trainer would move it anyway): the replay generates there
        replay = general_replay(model, tokenizer, config.general_replay, output)
        times = "once" if config.replay_copies == 1 else f"{config.replay_copies} times each"
        say(f"[data] {len(replay)} general prompts answered by the base model itself, mixed into training ({times}) "
            f"so the adapter keeps what the base knew ({output / REPLAY_FILE})")
        chats += replay * config.replay_copies
    train_set, dropped = build_dataset(chats, tokenizer, config.max_seq_len)
    # The held-out loss is a progress check, not the evaluation: a few of the short held-out samples.
    eval_chats = [c for c in eval_chats if len(c) == 3 and len(c[1]["content"]) < 1200][:MAX_EVAL_SAMPLES]
    eval_set = build_dataset(eval_chats, tokenizer, config.max_seq_len)[0] if eval_chats else None
    answer_tokens = sum(sum(1 for label in labels if label != -100) for labels in train_set["labels"])
    say(f"[data] {len(train_set)} training samples ({sum(train_set['length'])} tokens, {answer_tokens} answer tokens)"
        + (f", {dropped} dropped: longer than --max-seq-len" if dropped else "")
        + (f"; {len(eval_set)} held-out" if eval_set is not None else ""))

    try:
        model = get_peft_model(model, lora_config(config, model))
    except ValueError as error:
        raise BenLabError(f"--target-modules {','.join(config.target_modules)}: {error}") from None
    if precision != "fp32":  # bf16/fp16 train under autocast (TrainingArguments' bf16/fp16 flags)
        skip_lora_input_casts(model)
    trainable, total = model.get_nb_trainable_parameters()
    say(f"[lora] r={config.lora_r} alpha={config.lora_alpha} on {adapted_modules(model)}: "
        f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%)")
    general_bases = None
    if config.keep_general and replay:
        subspace_started = time.perf_counter()
        covariances = general_subspace.input_covariances(model, build_dataset(replay, tokenizer, config.max_seq_len)[0])
        general_bases = general_subspace.general_bases(covariances, config.keep_general)
        del covariances  # half a gigabyte for SmolLM2, not needed while training
        general_subspace.project_out(model, general_bases)
        say(f"[lora] A kept out of the directions holding {config.keep_general:g} of the general replay's input "
            f"energy ({general_subspace.describe(general_bases)}; "
            f"{time.perf_counter() - subspace_started:.0f} s)")
    elif config.keep_general:
        say("warning: --keep-general has nothing to measure: every general replay answer was dropped, so the adapter "
            "trains unconstrained", file=sys.stderr)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()

    steps_per_epoch = math.ceil(len(train_set) / (config.batch_size * config.grad_accum * state.num_processes))
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(steps_per_epoch * config.epochs)
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(config.batch_size, 8),  # no backward pass: wider batches are cheaper per token
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, total_steps // 20),
        weight_decay=0.0,
        logging_steps=1,
        eval_strategy="no",  # one held-out evaluation at the end: on a CPU each pass costs as much as ~5 steps
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        remove_unused_columns=False,
        report_to="none",
        seed=config.seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not state.is_main_process,
        **precision_flags,
    )
    trainer = make_trainer_class()(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=lambda features: pad_batch(features, tokenizer.pad_token_id),
    )
    say(f"[train] {total_steps} steps ({config.epochs:g} epochs of {steps_per_epoch} steps) on "
        f"{state.num_processes} process(es); Ctrl-C saves a checkpoint, --resume continues")
    with GracefulStop() as stop:
        for callback in make_callbacks(stop):
            trainer.add_callback(callback)
        if general_bases is not None:
            trainer.add_callback(general_subspace.make_callback(general_bases))
        train_started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=resume_from)
        train_seconds = time.perf_counter() - train_started
    if stop.requested:
        raise KeyboardInterrupt(f"checkpoint saved in {get_last_checkpoint(str(checkpoints))}; continue with --resume")

    eval_loss = trainer.evaluate()["eval_loss"] if eval_set is not None else None
    steps_done = trainer.state.global_step - (int(Path(resume_from).name.split("-")[-1]) if resume_from else 0)
    batches_seen = steps_done * config.batch_size * config.grad_accum * state.num_processes
    epochs_seen = batches_seen / max(len(train_set), 1)
    useful_tokens = sum(train_set["length"]) * epochs_seen
    model_config = model.get_base_model().config
    metrics = {
        "base_model": base.as_dict(),
        # What the GGUF exporter needs to know about the base (names, rotary permutation, layer count).
        "model_config": {key: getattr(model_config, key, None) for key in
                         ("model_type", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size")},
        "chat_template_source": template_source,
        "precision": precision,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "processes": state.num_processes,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_samples": len(train_set),
        "eval_samples": len(eval_set) if eval_set is not None else 0,
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "eval_loss": eval_loss,
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "tokens_per_second": round(useful_tokens / train_seconds, 1) if train_seconds else None,
        **peak_memory_mb(),
        "loss_history": [h for h in trainer.state.log_history if "loss" in h or "eval_loss" in h],
        "config": asdict(config),
    }
    if state.is_main_process:
        save_outputs(trainer, tokenizer, output, metrics)
    state.wait_for_everyone()
    return metrics


def save_outputs(trainer, tokenizer, output: Path, metrics: dict) -> None:
    """Adapter, tokenizer (with its chat template), metrics.json and the loss curve: staged, then moved into place
    so an earlier adapter is replaced only by a complete new one."""
    staging = output / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    plot_losses(metrics["loss_history"], staging / "loss_curve.png")
    atomic_write(staging / "metrics.json", json.dumps(metrics, indent=2, default=str))
    for item in staging.iterdir():
        os.replace(item, output / item.name)
    staging.rmdir()


def parse_args(argv: list[str] | None) -> TrainConfig:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="finetune_ben_lab.py",
        description="LoRA fine-tuning of a causal LM on the lab's instruction data. Writes a PEFT adapter, the "
        "tokenizer and chat template, metrics.json and loss_curve.png to --output-dir.",
    )
    parser.add_argument("--data", nargs="+", default=None,
                        help=f"training JSONL file(s) (default: {' and '.join(DEFAULT_DATA)}, the second when it exists)")
    parser.add_argument("--eval-data", default=None, help="held-out JSONL for eval loss (default: data/lab_eval.jsonl if it exists)")
    parser.add_argument("--base-model", default=None,
                        help="hub id, local directory, .gguf file, or 'smollm2'/'gemma3-270m' (default: "
                        "meta-llama/Llama-3.2-1B-Instruct on a CUDA GPU when available, else the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--output-dir", default=defaults.output_dir, help="where the adapter goes (default %(default)s)")
    parser.add_argument("--epochs", type=float, default=defaults.epochs, help="passes over the data (default %(default)s)")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="samples per step per device (default %(default)s)")
    parser.add_argument("--grad-accum", type=int, default=defaults.grad_accum, help="gradient accumulation steps (default %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate, cosine schedule (default %(default)s)")
    parser.add_argument("--lora-r", type=int, default=defaults.lora_r, help="LoRA rank (default %(default)s)")
    parser.add_argument("--lora-alpha", type=int, default=defaults.lora_alpha, help="LoRA alpha (default %(default)s)")
    parser.add_argument("--lora-dropout", type=float, default=defaults.lora_dropout, help="LoRA dropout (default %(default)s)")
    parser.add_argument("--target-modules", default=",".join(defaults.target_modules), help="comma-separated module names, or all-linear: every linear layer but the output head, for any architecture (default %(default)s)")
    parser.add_argument("--lora-layers", default=defaults.lora_layers,
                        help=f"decoder layers LoRA adapts: {ALL_LAYERS}, {TOP_HALF} (backpropagation stops halfway "
                        f"down: 1.6x the tokens/s on a CPU, but less learned), or N for the top N (default %(default)s)")
    parser.add_argument("--max-seq-len", type=int, default=defaults.max_seq_len, help="longest sample in tokens (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUTPUT_DIR/checkpoints")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory (big models)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="auto: bf16 on GPUs that support it, fp16 on older GPUs; on a CPU bf16 where it has "
                        "native bf16 (AVX512-BF16 or AMX), else fp32")
    parser.add_argument("--general-replay", type=int, default=defaults.general_replay,
                        help="everyday prompts the base model answers before training, mixed into the data to keep "
                        "its general knowledge; 0 turns it off (default %(default)s)")
    parser.add_argument("--replay-copies", type=int, default=defaults.replay_copies,
                        help="how many times each general replay answer is trained (default %(default)s)")
    parser.add_argument("--keep-general", type=float, default=None,
                        help="keep the adapter out of the input directions that hold this share (0-1) of the general "
                        "replay's energy in each layer, so everyday answers move less; 0 turns it off (default "
                        f"{defaults.keep_general}, off with --general-replay 0)")
    parser.add_argument("--save-steps", type=int, default=defaults.save_steps, help="checkpoint every N steps (default %(default)s)")
    args = parser.parse_args(argv)
    for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha", "max_seq_len", "save_steps", "replay_copies"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.epochs <= 0 and args.max_steps <= 0:
        parser.error("--epochs must be positive (or give --max-steps)")
    if not 0 <= args.lora_dropout < 1:
        parser.error(f"--lora-dropout must be in [0, 1), got {args.lora_dropout}")
    if not 0 <= args.general_replay <= len(REPLAY_PROMPTS):
        parser.error(f"--general-replay must be 0 to {len(REPLAY_PROMPTS)}, got {args.general_replay}")
    if args.lora_layers not in (TOP_HALF, ALL_LAYERS) and not (args.lora_layers.isdigit() and int(args.lora_layers) > 0):
        parser.error(f"--lora-layers must be {TOP_HALF}, {ALL_LAYERS} or a positive number, got {args.lora_layers}")
    if args.keep_general is None:  # measured on the replay, so without one it is off unless asked for
        args.keep_general = defaults.keep_general if args.general_replay else 0.0
    if not 0 <= args.keep_general < 1:
        parser.error(f"--keep-general must be in [0, 1), got {args.keep_general}")
    if args.keep_general and not args.general_replay:
        parser.error("--keep-general needs the general replay: drop --general-replay 0 or give --keep-general 0")
    if args.lr <= 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    data = args.data or [DEFAULT_DATA[0]] + [p for p in DEFAULT_DATA[1:] if Path(p).is_file()]
    eval_data = args.eval_data
    if eval_data is None and Path("data/lab_eval.jsonl").is_file():
        eval_data = "data/lab_eval.jsonl"
    return TrainConfig(
        data=data, eval_data=eval_data, base_model=args.base_model, output_dir=args.output_dir, epochs=args.epochs,
        max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()], max_seq_len=args.max_seq_len,
        lora_layers=args.lora_layers,
        seed=args.seed, resume=args.resume, gradient_checkpointing=args.gradient_checkpointing,
        precision=args.precision, save_steps=args.save_steps, general_replay=args.general_replay,
        replay_copies=args.replay_copies, keep_general=args.keep_general,
    )


def main(argv: list[str] | None = None) -> int:
    from accelerate import PartialState

    config = parse_args(argv)
    metrics = train(config)
    if not PartialState().is_main_process:  # under torchrun / accelerate launch the main process reports
        return 0
    print(f"[done] adapter in {config.output_dir}/ after {metrics['wall_seconds']:.0f} s: train loss "
          f"{metrics['train_loss']:.3f}" + (f", held-out loss {metrics['eval_loss']:.3f}" if metrics["eval_loss"] else "")
          + f", {metrics['tokens_per_second']} tokens/s, peak RSS {metrics['peak_rss_mb']:.0f} MB")
    return 0
