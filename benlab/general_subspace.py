"""Keeping the adapter out of the directions everyday text uses (`--keep-general ENERGY`).

A LoRA layer adds B·A·x to its output. Where x lies in the span of the layer's inputs on everyday text, that sum
moves what the model says about everything else: `benchmarks/retention_floor.py` found that an adapter of the
trained one's size pointing nowhere in particular flips as many general-knowledge probes as the trained one. Here,
before training, the base model reads the general replay (its own answers to everyday prompts, never the probes)
and each adapted layer's inputs give an uncentred covariance X^T X; its top eigenvectors holding ENERGY of the
trace are the layer's general subspace U. A's rows are kept orthogonal to U (A <- A - A U U^T at the start and
after every optimizer step: projected gradient descent), so B·A·x is zero for an x inside U and the adapter learns
the lab only in the remaining directions. The projected A is an ordinary LoRA A: saving, merging and the GGUF
export are unchanged. The same idea as null-space-constrained editing (AlphaEdit) and LoRA-Null.
"""

from __future__ import annotations


def adapted_linears(model) -> dict:
    """PEFT's LoRA layers of `model` by name."""
    from peft.tuners.lora import Linear

    return {name: module for name, module in model.named_modules() if isinstance(module, Linear)}


def input_covariances(model, dataset) -> dict:
    """Per LoRA layer, the uncentred covariance (float32: SmolLM2's 210 layers hold 0.5 GB of them) of its input over
    every token of `dataset` (rows with input_ids), the adapter disabled."""
    import torch

    layers = adapted_linears(model)
    covariances = {name: torch.zeros(m.in_features, m.in_features) for name, m in layers.items()}

    def accumulate(name):
        def hook(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            covariances[name].add_((x.T @ x).cpu())

        return hook

    hooks = [module.register_forward_pre_hook(accumulate(name)) for name, module in layers.items()]
    try:
        with torch.no_grad(), model.disable_adapter():
            for row in dataset:
                model(input_ids=torch.tensor([row["input_ids"]], device=model.device))
    finally:
        for hook in hooks:
            hook.remove()
    return covariances


def general_bases(covariances: dict, energy: float) -> dict:
    """Per layer, the orthonormal columns U spanning the fewest top eigenvectors that hold `energy` of the trace."""
    import torch

    bases = {}
    for name, covariance in covariances.items():
        values, vectors = torch.linalg.eigh(covariance.double())  # ascending
        values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
        share = torch.cumsum(values, 0) / values.sum()
        count = int((share < energy).sum()) + 1
        bases[name] = vectors[:, :count].float().contiguous()
    return bases


def project_out(model, bases: dict) -> None:
    """A <- A - (A U) U^T in every LoRA layer: A's rows no longer read any input direction in U."""
    import torch

    with torch.no_grad():
        for name, module in adapted_linears(model).items():
            weight = module.lora_A[module.active_adapter[0]].weight
            basis = bases[name].to(weight.device)
            weight -= ((weight.float() @ basis) @ basis.T).to(weight.dtype)


def make_callback(bases: dict):
    """A TrainerCallback that projects A after every optimizer step."""
    from transformers import TrainerCallback

    class KeepOutOfGeneralSubspace(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            project_out(model, bases)
            return control

    return KeepOutOfGeneralSubspace()


def describe(bases: dict) -> str:
    """'q_proj 48 of 576, ...': the mean subspace size per layer kind."""
    sizes: dict[str, list[tuple[int, int]]] = {}
    for name, basis in bases.items():
        sizes.setdefault(name.rsplit(".", 1)[-1], []).append(basis.shape)
    return ", ".join(f"{kind} {round(sum(s[1] for s in shapes) / len(shapes))} of {shapes[0][0]}"
                     for kind, shapes in sizes.items())
