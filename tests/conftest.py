"""Shared fixtures, built once per test session."""

import contextlib
import threading
import time

import pytest
import uvicorn

from benlab.lab_server import LocalLab, free_port


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """The evaluation's base-answer cache goes to a folder of this test session, never the user's ~/.cache."""
    import os

    os.environ["BENLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("benlab-cache"))
    yield


@pytest.fixture(scope="session")
def lab_url():
    """A real lab server in a child process on a free loopback port."""
    with LocalLab() as lab:
        yield lab.url


@contextlib.contextmanager
def serve(app):
    """Serve an ASGI app with uvicorn in a background thread on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


PHI3_TEMPLATE = (
    "{% for message in messages %}{{'<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' "
    "else 'user') + '\\n' + message['content'] + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
# Each architecture's tiny configuration and its family's chat format: (config class, settings, special tokens
# (unk, bos, eos), more special tokens, chat template). Shapes that exercise what differs: Qwen2 ties the output
# head, Qwen3's head_dim is not hidden/heads, Phi-3 fuses q/k/v and gate/up, Gemma 3 has six layers (five local,
# one global), query scaling by head_dim and norms around each block.
TINY = {
    "llama": ("LlamaConfig", {}, ("<unk>", "<|im_start|>", "<|im_end|>"), [], CHATML),
    "qwen2": ("Qwen2Config", {"tie_word_embeddings": True}, ("<unk>", "<|endoftext|>", "<|im_end|>"), ["<|im_start|>"], CHATML),
    "qwen3": ("Qwen3Config", {"head_dim": 32}, ("<unk>", "<|endoftext|>", "<|im_end|>"), ["<|im_start|>"], CHATML),
    "phi3": ("Phi3Config", {"original_max_position_embeddings": 1024}, ("<unk>", "<s>", "<|end|>"),
             ["<|system|>", "<|user|>", "<|assistant|>"], PHI3_TEMPLATE),
    "gemma3": ("Gemma3TextConfig", {"num_hidden_layers": 6, "head_dim": 16, "query_pre_attn_scalar": 16,
                                    "sliding_window": 512, "tie_word_embeddings": True},
               ("<unk>", "<bos>", "<end_of_turn>"), ["<start_of_turn>"], GEMMA_TEMPLATE),
}


def build_tiny_model(directory, model_type="llama", chat_template="family", seed=0, initializer_range=0.3):
    """A random model of one architecture with a BPE tokenizer trained on the spot on lab words: seconds to make,
    the same code paths as a real model. chat_template: the family's (default), another, or None."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    config_class, settings, (unk, bos, eos), extra, family_template = TINY[model_type]
    corpus = [
        "The string order is 0.871 and the stabilizer mean 0.976 for the spt_cluster phase.",
        "ising_symmetry_breaking trivial_product pseudorandom spt_cluster magnetization entanglement TRI drift",
        "Which phase produced these measurements? Run A Run B Grows Saturates Flat 0123456789 .,:;=()-",
        "You are Ben's Lab AI for the Jarvis-2v quantum phase lab. system user assistant model",
    ] * 20
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[unk, bos, eos, *extra],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk, bos_token=bos, eos_token=eos, pad_token=eos,
                                        additional_special_tokens=extra)
    tokenizer.chat_template = family_template if chat_template == "family" else chat_template
    torch.manual_seed(seed)
    shape = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
                 # 0.3: logits big enough for a frozen random head to be steerable in a few steps
                 initializer_range=initializer_range)
    config = getattr(transformers, config_class)(**{**shape, **settings})
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def strengthen(trained, base_dir, out):
    """The trained adapter with random B matrices, so that it moves the logits a lot (metrics.json and the chat
    template kept, as export_ben_lab.py reads them)."""
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), trained)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    model.save_pretrained(out)
    for name in ("metrics.json", "tokenizer_config.json", "chat_template.jinja"):
        if (trained / name).exists():
            shutil.copy(trained / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def lab_data(lab_url, tmp_path_factory):
    """A small real campaign from the lab: (training file, held-out file)."""
    from benlab import datagen
    from benlab.common import run_main

    out = tmp_path_factory.mktemp("lab-data")
    argv = ["--api-url", lab_url, "--out", str(out / "train.jsonl"), "--eval-out", str(out / "eval.jsonl"),
            "--phase-experiments", "4", "--tri-tests", "8", "--discovery-runs", "1", "--drift-runs", "4",
            "--eval-fraction", "0.5"]
    assert run_main(datagen.main, argv) == 0
    return out / "train.jsonl", out / "eval.jsonl"
