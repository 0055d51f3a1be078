"""Greedy generation in left-padded batches: the base model's own answers for the general-knowledge replay
(training) and every generated answer of the evaluation."""

from __future__ import annotations

# Decoding reads every weight once per step: a batch shares that cost (32: 113 tokens/s fp32 on 2 cores, 16: 78). A GPU
# is bound by kernel launches at these sizes, so there a batch shares far more.
GENERATION_BATCH = {"cpu": 32, "cuda": 128}


def prompt_text(tokenizer, chat: list[dict]) -> str:
    """The chat up to (without) its last turn, rendered for generation: chat[-1] is the answer to be written."""
    return tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)


def generate_replies(model, tokenizer, chats: list[list[dict]], max_new_tokens: int, stop_strings=None,
                     bar=None) -> list[str]:
    """Each chat's next assistant turn, greedy, stopped at end of turn, at one of `stop_strings` (kept in the
    text) or after max_new_tokens. Chats are sorted by prompt length so a batch pads little."""
    import torch

    order = sorted(range(len(chats)), key=lambda i: len(prompt_text(tokenizer, chats[i])))
    replies: list[str] = [""] * len(chats)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right, so the padding goes on the left
    try:
        size = GENERATION_BATCH.get(model.device.type, GENERATION_BATCH["cpu"])
        for start in range(0, len(order), size):
            batch_ids = order[start : start + size]
            prompts = [prompt_text(tokenizer, chats[i]) for i in batch_ids]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                     temperature=None, stop_strings=stop_strings, tokenizer=tokenizer,
                                     pad_token_id=tokenizer.pad_token_id)
            for i, row in zip(batch_ids, out[:, batch["input_ids"].shape[1] :]):
                replies[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
            if bar is not None:
                bar.update(len(batch_ids))
    finally:
        tokenizer.padding_side = side
    return replies
