"""Per-sample gradients of linear layers' weights, exact and in one backward pass per batch.

A linear layer's weight gradient is the sum over positions of the outer products of its output gradients and its
inputs, so recording each module's input ``a [B, T, in]`` and output gradient ``g [B, T, out]`` gives every
sample's own gradient (the Opacus construction). Written by hand because ``torch.func.vmap(grad(...))`` cannot
run through TorchRec's jagged lookups or Hugging Face attention's data-dependent mask checks, and
``torch.func.jacrev`` would pay one backward pass per sample; here only the modules after the chosen ones are
differentiated at all (every other parameter is frozen for the pass).
"""

from __future__ import annotations

import difflib
import fnmatch
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from recsys.errors import RunError

LINEAR_TYPES = (nn.Linear, Conv1D)
"""Modules whose weight gradients are recorded: ``nn.Linear`` (weight ``[out, in]``) and GPT-2's ``Conv1D``
(weight ``[in, out]``)."""


def linear_modules(root: nn.Module, patterns: list[str], what: str) -> list[tuple[str, nn.Module]]:
    """The linear modules of ``root`` whose qualified names match any fnmatch ``patterns``, in module order; a
    `RunError` naming ``what`` and the closest names when a pattern matches none."""
    named = [(name, m) for name, m in root.named_modules() if isinstance(m, LINEAR_TYPES)]
    found = []
    for pattern in patterns:
        hits = [(name, m) for name, m in named if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, [n for n, _ in named], n=4) or [n for n, _ in named][-4:]
            raise RunError(f"{what}: {pattern!r} names no linear module; e.g. {close}")
        found += [hit for hit in hits if hit not in found]
    return found


def last_attention_linear(root: nn.Module) -> str:
    """The name of the last trainable linear module inside an attention block (``attn`` / ``attention`` in its
    name), DEALRec's choice of the effort score's weights: LLaMA's last ``v_proj`` LoRA B (under LoRA only the
    adapters are trainable), GPT-2's last ``attn.c_proj``, BERT's last ``attention.output.dense``."""
    names = [name for name, m in root.named_modules()
             if isinstance(m, LINEAR_TYPES) and m.weight.requires_grad and _in_attention(name)]  # fmt: skip
    if not names:
        raise RunError(f"{type(root).__name__} has no trainable linear module in an attention block; name one")
    return names[-1]


def _in_attention(name: str) -> bool:
    lowered = name.lower()
    return "attn" in lowered or "attention" in lowered


@contextmanager
def only_trainable(root: nn.Module, weights: list[nn.Parameter]) -> Iterator[None]:
    """Within the block, only ``weights`` require gradients (so autograd records nothing before them); restored
    after."""
    before = {p: p.requires_grad for p in root.parameters()}
    chosen = {id(w) for w in weights}
    try:
        for p in root.parameters():
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)


def per_sample_gradients(losses_of: Callable[[], torch.Tensor], root: nn.Module,
                         modules: list[nn.Module]) -> list[torch.Tensor]:  # fmt: skip
    """Each sample's gradient of its own loss w.r.t. each module's weight: ``[B, *weight.shape]`` per module.

    Args:
        losses_of: runs the forward pass and returns ``[B]`` per-sample losses (sample b's loss may depend only
            on sample b's rows, as in any model without batch statistics).
        root: the model holding ``modules`` (its other parameters are frozen for the pass).
        modules: linear modules (`LINEAR_TYPES`), each called once per forward pass.
    """
    records: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if id(module) in records:
            raise RuntimeError(f"{type(module).__name__} ran twice in one forward pass: its per-sample gradient "
                               "would mix the calls")  # fmt: skip
        records[id(module)] = (args[0], output)

    handles = [m.register_forward_hook(record) for m in modules]
    try:
        with torch.enable_grad(), only_trainable(root, [m.weight for m in modules]):
            losses = losses_of()
            outputs = [records[id(m)][1] for m in modules]
            grads = torch.autograd.grad(losses.sum(), outputs, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    batch = len(losses)
    result = []
    for module, grad in zip(modules, grads):
        inputs = records[id(module)][0].detach()
        a = inputs.reshape(batch, -1, inputs.shape[-1])  # [B, T, in]
        if grad is None:  # the losses do not depend on this module
            result.append(torch.zeros(batch, *module.weight.shape, dtype=a.dtype, device=a.device))
            continue
        g = grad.reshape(batch, -1, grad.shape[-1])  # [B, T, out]
        if isinstance(module, nn.Linear):
            result.append(torch.einsum("bto,bti->boi", g, a))
        else:
            result.append(torch.einsum("bti,bto->bio", a, g))
    return result


def flat(gradients: list[torch.Tensor]) -> torch.Tensor:
    """``[B, P]`` per-sample gradients of several weights, flattened and concatenated."""
    return torch.cat([g.reshape(len(g), -1) for g in gradients], dim=1)
