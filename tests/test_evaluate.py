"""The evaluation: multiple-choice scoring by log-likelihood, and the report files."""

import json
import re
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from benlab import evaluate, skills, train
from benlab.common import run_main


class Prefers(torch.nn.Module):
    """A stand-in model whose next-token distribution always favours one token."""

    device = torch.device("cpu")

    def __init__(self, token_id, vocab):
        super().__init__()
        self.token_id, self.vocab = token_id, vocab

    def forward(self, input_ids, logits_to_keep=0, use_cache=False, past_key_values=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token_id] = 10.0
        cache = SimpleNamespace(batch_repeat_interleave=lambda repeats: None)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:], past_key_values=cache)


@pytest.mark.parametrize("reasoning", ["", "spt_cluster needs stabilizer_mean > 0.5: here 0.91 > 0.5, yes. Answer:"])
def test_cached_scores_equal_full_forward_scores(tiny_llama, reasoning):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "Which phase?"},
            {"role": "assistant", "content": "spt_cluster"}]
    choices = ["ising_symmetry_breaking", "spt_cluster", "trivial_product", "pseudorandom"]
    prompt = tokenizer(tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True),
                       add_special_tokens=False)["input_ids"]
    if reasoning:
        prompt += tokenizer(reasoning, add_special_tokens=False)["input_ids"]
    for choice, score in zip(choices, evaluate.choice_scores(model, tokenizer, chat, choices, reasoning)):
        ids = tokenizer((" " if reasoning else "") + choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([prompt + ids])).logits[0], dim=-1)
        direct = sum(float(logprobs[len(prompt) + j - 1, t]) for j, t in enumerate(ids))
        assert abs(score - direct) < 1e-4


def test_reasoning_is_cut_at_the_answer_mark():
    assert evaluate.until_answer("a: no. b: yes. Answer: b. More.") == "a: no. b: yes. Answer:"
    assert evaluate.until_answer("rambling without an answer ") == "rambling without an answer Answer:"
    assert evaluate.until_answer("") == "Answer:"


def chain_model(tiny_llama, tokenizer, start_token: int, text: str):
    """The tiny llama rewired to say `text` after `start_token`, whatever came before: attention and MLP outputs
    zeroed, so each position sees only its own embedding; each chain token gets its own embedding direction, and the
    lm_head maps it to the next token of the chain."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    chain = [start_token] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        for i, (token, following) in enumerate(zip(chain, chain[1:])):
            model.model.embed_tokens.weight[token, i] = 1.0
            model.lm_head.weight[following, i] = 50.0
    assert len(set(chain[:-1])) == len(chain) - 1, "a token repeats in the chain: pick other words"
    return model


def test_generated_reasoning_stops_at_the_answer_mark(tiny_llama):
    """Observed on the generated tokens: generation ends at "Answer:", not cut afterwards."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chats = [[{"role": "system", "content": "s"}, {"role": "user", "content": question}, {"role": "assistant", "content": "x"}]
             for question in ("Which phase?", "Run A or Run B? Answer with one of them, please.")]
    prompt_end = tokenizer(evaluate.prompt_text(tokenizer, chats[0]), add_special_tokens=False)["input_ids"][-1]
    model = chain_model(tiny_llama, tokenizer, prompt_end, "pt_cluster Answer: Run B")
    produced = []
    generate = model.generate
    model.generate = lambda **kw: produced.append(generate(**kw)) or produced[-1]
    side = tokenizer.padding_side
    texts = evaluate.reasonings(model, tokenizer, chats)
    assert texts == ["pt_cluster Answer:"] * 2
    new_tokens = produced[0].shape[1] - max(len(tokenizer(evaluate.prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"]) for c in chats)
    assert new_tokens == len(tokenizer("pt_cluster Answer:", add_special_tokens=False)["input_ids"])
    assert tokenizer.padding_side == side  # restored for training-style batches
    # without a stop the same model goes on past the mark
    from benlab.generation import generate_replies

    assert generate_replies(model, tokenizer, chats[:1], 20) == ["pt_cluster Answer: Run B"]


def test_scorer_picks_the_answer_the_model_prefers(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "Run A or Run B?"},
            {"role": "assistant", "content": "Run A"}]
    choices = ["Run A", "Run B"]
    for favourite in choices:
        last = tokenizer(favourite, add_special_tokens=False)["input_ids"][-1]
        scores = evaluate.choice_scores(Prefers(last, len(tokenizer)), tokenizer, chat, choices)
        assert choices[scores.index(max(scores))] == favourite


def test_report_files(tiny_llama, lab_data, tmp_path):
    adapter = tmp_path / "lora"
    argv = ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(adapter),
            "--max-steps", "4", "--batch-size", "4", "--grad-accum", "1", "--lr", "1e-2", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    out = tmp_path / "eval"
    assert run_main(evaluate.main, ["--adapter-dir", str(adapter), "--eval-data", str(lab_data[1]), "--out-dir", str(out),
                                    "--limit", "3", "--gguf", str(tmp_path / "none.gguf")]) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("tool_call", "result_phase", "result_drift", "result_discovery", "invented_measurements", "false_refusals", "expectations",
                "concepts", "loop_concepts"):
        assert set(report[key]) == {"base", "finetuned", "n"} and report[key]["n"] == 3, key
    # every worked step the answers write, counted right or wrong (a random tiny model writes few or none)
    assert set(report["derived_values"]) == {"base", "finetuned", "n"} and report["derived_values"]["n"] >= 0
    # a random tiny model answers no probe right: retention has nothing to keep, and says so (n 0)
    assert set(report["general_retention"]) == {"base", "finetuned", "n"}
    assert report["loop_general"]["n"] == report["general_retention"]["n"]  # the same probes, in the lab loop
    assert report["general_probes"]["n"] == 12
    predictions = json.loads((out / "predictions.json").read_text())
    assert {p["kind"] for p in predictions} >= {"tool_call", "concept", "measurement", "general_probe"}
    for kind in ("phase_identification", "tri_comparison", "drift_class"):
        entry = report[kind]
        assert set(entry) == {"base", "finetuned", "chance", "n"} and entry["n"] > 0
        assert 0 <= entry["base"] <= 1 and 0 <= entry["finetuned"] <= 1
    assert report["phase_identification"]["chance"] == 0.25
    assert report["heldout_loss"]["finetuned"] > 0 and report["heldout_loss"]["base"] > 0
    assert "| phase_identification |" in (out / "report.md").read_text()
    for png in ("accuracy.png", "lab_phases.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_base_answers_are_reused_question_by_question(tiny_llama, lab_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENLAB_CACHE_DIR", str(tmp_path / "cache"))  # not the answers other tests left
    adapter = tmp_path / "lora"
    argv = ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(adapter),
            "--max-steps", "2", "--batch-size", "4", "--lr", "1e-2", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(lab_data[1].read_text())

    def report(*extra):
        out = tmp_path / "eval"
        assert run_main(evaluate.main, ["--adapter-dir", str(adapter), "--eval-data", str(held_out), "--out-dir",
                                        str(out), "--limit", "2", "--gguf", str(tmp_path / "none.gguf"), *extra]) == 0
        return json.loads((out / "report.json").read_text()), capsys.readouterr().out

    first, said = report()
    assert "reusing" not in said
    # sessions need both GGUFs; the message names what is missing and what to do (it said "no None" before)
    assert (f"lab sessions skipped: no base GGUF: the base model was not loaded from one; no {tmp_path / 'none.gguf'}: "
            "export the model with export_ben_lab.py first") in said
    second, said = report()
    n = re.search(r"base model: reusing (\d+) of its (\d+) answers", said)
    assert n and n.group(1) == n.group(2) and "new, answered now" not in said
    assert second == first  # the cached base answers give the same base figures; the fine-tuned ones are recomputed
    assert "reusing" not in report("--no-base-cache")[1]
    # a multiple-choice question whose reference reasoning is reworded (run 35's drift answers) is the same question
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    reworded = next(row for row in rows if row["meta"]["kind"] in evaluate.QUESTION_TYPES)
    reworded["messages"][-1]["content"] = "Reworded reference. " + reworded["messages"][-1]["content"]
    held_out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert "new, answered now" not in report()[1]
    probes = list(skills.PROBES)
    question, accepted = probes[0]
    monkeypatch.setattr(skills, "PROBES", tuple([(question, accepted + ("another spelling",))] + probes[1:]))
    assert "new, answered now" not in report()[1]  # an accepted spelling is judging, not answering
    monkeypatch.setattr(skills, "PROBES", tuple([(question + " One word.", accepted)] + probes[1:]))
    assert "; 2 new, answered now" in report()[1]  # a probe asked otherwise is answered anew, in both prompts
    monkeypatch.setattr(skills, "PROBES", tuple(probes))
    rows = [json.loads(line) for line in held_out.read_text().splitlines()]
    tool_call = next(row for row in rows if row["meta"]["kind"] == "tool_call")
    tool_call["messages"][1]["content"] += " Thanks."
    held_out.write_text("".join(json.dumps(row) + "\n" for row in rows))  # one question reworded
    assert "; 1 new, answered now" in report()[1]
    # a kind's token budget is in its answers' keys: a new budget answers that kind anew and reuses every other answer
    calls = min(2, sum(row["meta"]["kind"] == "tool_call" for row in rows))
    monkeypatch.setitem(skills.GENERATED, "tool_call", ("tool_call", skills.GENERATED["tool_call"][1] + 1))
    assert f"; {calls} new, answered now" in report()[1]


def test_missing_eval_file_is_one_line(tmp_path, capsys):
    assert run_main(evaluate.main, ["--eval-data", str(tmp_path / "nope.jsonl")]) == 2
    assert "generate_lab_training_data.py" in capsys.readouterr().err


def test_accuracy_from_hand_built_scores():
    choices = ["Run A", "Run B"]
    questions = [{"kind": "tri_comparison", "answer": "Run A", "choices": choices, "chat": []},
                 {"kind": "tri_comparison", "answer": "Run B", "choices": choices, "chat": []},
                 {"kind": "drift_class", "answer": "Flat", "choices": ["Grows", "Saturates", "Flat"], "chat": []}]
    answers = {"base": [("r", [-1.0, -2.0]), ("r", [-1.0, -2.0]), ("r", [-3.0, -2.0, -1.0])],
               "finetuned": [("r", [-0.1, -5.0]), ("r", [-5.0, -0.1]), ("r", [-0.5, -2.0, -1.0])]}
    results, predictions = evaluate.multiple_choice_results(questions, answers)
    assert results["tri_comparison"] == {"base": 0.5, "finetuned": 1.0, "n": 2, "chance": 0.5}
    assert results["drift_class"] == {"base": 1.0, "finetuned": 0.0, "n": 1, "chance": 0.333}
    assert results["phase_identification"]["n"] == 0 and results["phase_identification"]["base"] is None
    assert [p["finetuned"]["pick"] for p in predictions] == ["Run A", "Run B", "Grows"]


def test_an_unwritable_out_dir_is_one_line_before_anything_loads(lab_data, tmp_path, capsys):
    code = run_main(evaluate.main, ["--adapter-dir", str(tmp_path / "no-adapter"), "--eval-data", str(lab_data[1]),
                                    "--out-dir", "/proc/benlab-cannot-write-here"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--out-dir /proc/benlab-cannot-write-here: cannot write there" in err[0]


def test_a_cut_adapter_is_one_line(tiny_llama, lab_data, tmp_path, capsys):
    adapter = tmp_path / "lora"
    argv = ["--base-model", str(tiny_llama), "--data", str(lab_data[0]), "--output-dir", str(adapter),
            "--max-steps", "1", "--general-replay", "0"]
    assert run_main(train.main, argv) == 0
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()
    code = run_main(evaluate.main, ["--adapter-dir", str(adapter), "--eval-data", str(lab_data[1]),
                                    "--out-dir", str(tmp_path / "eval")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot be loaded as an adapter" in err[0], err


def test_lab_sessions_run_in_one_chat_process_and_a_broken_one_is_counted_failed(lab_url, tiny_llama, tmp_path):
    from benlab import hf_to_gguf

    gguf = tmp_path / "tiny.gguf"
    hf_to_gguf.convert_hf_model(tiny_llama, gguf, "f32")
    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": question}]}
            for question in ("phase " * 9000, "Run the cluster state.", "Which phase has string order?")]
    done = []
    runs = evaluate.run_sessions(rows, gguf, lab_url, SimpleNamespace(update=lambda n=1: done.append(n)))
    assert "no longer fits" in runs[0]["error"] and sum(done) == 3
    assert [run["exchange"]["turns"][0]["question"] for run in runs[1:]] == [r["messages"][1]["content"] for r in rows[1:]]
    missing = evaluate.run_sessions(rows, tmp_path / "none.gguf", lab_url)
    assert len(missing) == 3 and all("none.gguf" in run["error"] for run in missing)
