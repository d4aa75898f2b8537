"""Per-sample scores of the LLM recommender's training samples (history window → next item):

- from the surrogate sequence model (SASRec trained with BCE, one negative per position): DEALRec's influence
  score ``∇L(s)ᵀ H⁻¹ v`` (``v`` the mean gradient over all samples, ``H⁻¹ v`` by LiSSA, once), GraNd's gradient
  norm ``‖∇L(s)‖`` and EL2N's error norm ``‖softmax(f(s)) − onehot(y)‖``, averaged over the sample's positions;
- from the LM: DEALRec's effort score, the norm of the gradient of the sample's LM loss.

Gradients are taken w.r.t. a small set of linear weights (by default the last attention projection, as the
authors' code) with `per_sample_gradients`, in eval mode (dropout off: a score is a deterministic function of the
sample). A sample's surrogate loss reads the window as a sequence, every position predicting its next item, with
negatives drawn once per sample from the scoring seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from recsys.data.prompts import TokenSamples, Windows
from recsys.data.sequences import IGNORE
from recsys.pruning.gradients import flat, last_attention_linear, linear_modules, only_trainable, per_sample_gradients
from recsys.pruning.lissa import HessianVectorProduct, LiSSA
from recsys.tasks.llm import LLMTask
from recsys.tasks.sequential import SequentialTask


def window_sequences(windows: Windows, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window as a left-padded next-item sequence: ``inputs [N, W]`` = its history, ``targets [N, W]`` = the
    history shifted by one then the window's target (``W`` the longest history; `IGNORE` / ``pad`` at padding)."""
    sizes = np.diff(windows.indptr)
    width = int(sizes.max()) if len(sizes) else 1
    inputs = np.full((len(windows), width), pad, dtype=np.int64)
    targets = np.full((len(windows), width), IGNORE, dtype=np.int64)
    rows = np.repeat(np.arange(len(windows)), sizes)
    offsets = np.arange(len(windows.history)) - np.repeat(windows.indptr[:-1], sizes)
    columns = np.repeat(width - sizes, sizes) + offsets
    inputs[rows, columns] = windows.history
    following = np.concatenate([windows.history[1:], [0]])  # the next history item, or (at a window's end) below
    last = windows.indptr[1:] - 1  # each window's last history position
    following[last[sizes > 0]] = windows.targets[sizes > 0]
    targets[rows, columns] = following
    return inputs, targets


class SurrogateScores:
    """Influence, GraNd and EL2N of every window from a trained `SequentialTask` (BCE loss).

    Args:
        task: the trained surrogate.
        windows: the samples.
        modules: module-name patterns of the weights the gradients are taken w.r.t. (None: the last attention
            output projection, DEALRec's ``layer.1.attention.dense``).
        batch_size: samples per scoring batch.
        seed: seed of each sample's fixed negatives.
    """

    def __init__(self, task: SequentialTask, windows: Windows, modules: list[str] | None = None,
                 batch_size: int = 256, seed: int = 0) -> None:  # fmt: skip
        if task.loss_name != "bce":
            raise ValueError("the surrogate's scores follow DEALRec's BCE loss: train it with loss 'bce'")
        self.task, self.batch_size = task, batch_size
        # default: SASRec's last attention output projection (the authors' `item_encoder.layer.1.attention.dense`)
        last = f"model.blocks.{len(task.model.blocks) - 1}.out"
        self.modules = [m for _, m in linear_modules(task, modules or [last], "influence_modules")]
        inputs, targets = (part[:, -task.model.max_len :] for part in window_sequences(windows, task.model.pad))
        self.inputs, self.targets = torch.from_numpy(inputs), torch.from_numpy(targets)
        generator = torch.Generator().manual_seed(seed)
        self.negatives = torch.randint(0, task.n_items, (*inputs.shape, task.negatives), generator=generator)
        self.generator = torch.Generator().manual_seed(seed + 1)

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, samples: torch.Tensor, fresh: bool = False) -> dict[str, torch.Tensor]:
        """The samples' surrogate batch; ``fresh`` draws new negatives (LiSSA's stochastic Hessians, as the
        authors redraw them on every access)."""
        negatives = self.negatives[samples]
        if fresh:
            negatives = torch.randint(0, self.task.n_items, negatives.shape, generator=self.generator)
        device = self.task.device
        return {"input": self.inputs[samples].to(device), "target": self.targets[samples].to(device),
                "negatives": negatives.to(device)}  # fmt: skip

    def gradients(self, samples: torch.Tensor) -> torch.Tensor:
        """``[B, P]`` the samples' flattened per-sample gradients."""
        batch = self.batch(samples)
        return flat(per_sample_gradients(lambda: self.task.losses(batch), self.task, self.modules))

    def hessian_vector_product(self, samples: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """``[P]`` the samples' mean-loss Hessian (w.r.t. the chosen weights, fresh negatives) times ``vector``."""
        weights = [m.weight for m in self.modules]
        batch = self.batch(samples, fresh=True)
        with torch.enable_grad(), only_trainable(self.task, weights):
            loss = self.task.losses(batch).mean()
            grads = torch.autograd.grad(loss, weights, create_graph=True)
            parts = vector.split([w.numel() for w in weights])
            dot = sum((g * p.view_as(g)).sum() for g, p in zip(grads, parts))
            products = torch.autograd.grad(dot, weights)
        return torch.cat([p.reshape(-1) for p in products])

    def scores(self, lissa: LiSSA, progress: bool = False) -> dict[str, np.ndarray]:
        """``influence``, ``grand``, ``el2n`` ``[N]`` of every sample (eval mode)."""
        was_training = self.task.training
        self.task.eval()
        try:
            influence, grand = influence_and_norms(self.gradients, self.hessian_vector_product, len(self), lissa,
                                                   self.batch_size, progress)  # fmt: skip
            el2n = torch.cat([self.error_norms(chunk) for chunk in torch.arange(len(self)).split(self.batch_size)])
        finally:
            self.task.train(was_training)
        return {"influence": influence, "grand": grand, "el2n": el2n.double().cpu().numpy()}

    def error_norms(self, samples: torch.Tensor) -> torch.Tensor:
        """``[B]`` EL2N: ``‖softmax(h_t · E) − onehot(y_t)‖₂`` over all items, averaged over the real positions."""
        batch = self.batch(samples)
        with torch.no_grad():
            logits = self.task.model(batch["input"]) @ self.task.model.item_vectors().T  # [B, L, n_items]
            real = batch["target"] != IGNORE
            error = F.softmax(logits[real], dim=-1)
            error[torch.arange(len(error)), batch["target"][real]] -= 1.0
            grid = torch.zeros(real.shape, dtype=error.dtype, device=error.device)
            grid[real] = error.norm(dim=1)
        return grid.sum(1) / real.sum(1).clamp(min=1)


def influence_and_norms(gradients: Callable[[torch.Tensor], torch.Tensor], hvp: HessianVectorProduct, n: int,
                        lissa: LiSSA, batch_size: int = 256, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """DEALRec's influence ``∇L(s)ᵀ H⁻¹ v`` and the gradient norm ``‖∇L(s)‖`` (GraNd) of every sample.

    Args:
        gradients: ``samples [B] → [B, P]`` per-sample gradients.
        hvp: the samples' Hessian-vector product (`LiSSA`'s input).
        n: the number of samples; ``v`` is the mean gradient over all of them, ``H⁻¹ v`` is solved once.
    """
    from tqdm.auto import tqdm

    chunks = torch.arange(n).split(batch_size)
    # two passes over the gradients rather than keeping all of them: N × P floats would not stay small at scale
    v = sum(gradients(c).sum(0) for c in tqdm(chunks, desc="mean gradient", disable=not progress, leave=False)) / n
    h = lissa.solve(hvp, v, n, progress)
    influence, norms = [], []
    for chunk in tqdm(chunks, desc="influence", disable=not progress, leave=False):
        g = gradients(chunk)
        influence.append(g @ h)
        norms.append(g.norm(dim=1))
    return torch.cat(influence).double().cpu().numpy(), torch.cat(norms).double().cpu().numpy()


def effort_scores(task: LLMTask, samples: TokenSamples, modules: list[str] | None = None, batch_size: int = 16,
                  progress: bool = False) -> np.ndarray:  # fmt: skip
    """``[N]`` DEALRec's effort score: ``‖∇_φ L_LM(s)‖₂`` of every sample's LM loss (the task's: the response, or
    the whole prompt with ``train_on_inputs`` as the authors), φ the weights ``modules`` names (None: the LM's last
    attention projection, its LoRA B under LoRA). Eval mode; batches of similar lengths (less padding), in order."""
    from tqdm.auto import tqdm

    chosen = [m for _, m in linear_modules(task, modules or [last_attention_linear(task)], "effort_modules")]
    lengths = np.diff(samples.indptr)
    order = np.argsort(lengths, kind="stable")
    norms = np.zeros(len(samples), dtype=np.float64)
    was_training = task.training
    task.eval()
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="effort scores", unit="batch", disable=not progress,
                          leave=False):  # fmt: skip
            index = order[start : start + batch_size]
            batch = {k: v.to(task.device) for k, v in task.collate([samples[int(i)] for i in index]).items()}
            grads = flat(per_sample_gradients(lambda: task.losses(batch), task, chosen))
            norms[index] = grads.norm(dim=1).double().cpu().numpy()
    finally:
        task.train(was_training)
    return norms
