"""Stochastic LiSSA (Agarwal et al., 2017; Koh & Liang, 2017): an estimate of ``H⁻¹ v`` from Hessian-vector
products on random samples, never forming ``H``.

The recursion ``h_t = v + (1 - damping) h_{t-1} - H_{s_t} h_{t-1} / scale`` converges, when every sampled
Hessian's eigenvalues lie in ``[0, scale)``, to ``scale · (H + damping · scale · I)⁻¹ v``; `LiSSA.solve` returns
``h_T / scale``, the damped inverse-Hessian product itself (DEALRec's code leaves out the division, a constant
factor its min-max normalisation removes).
"""

from __future__ import annotations

from typing import Callable

import torch

from recsys.errors import RunError

HessianVectorProduct = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(samples [S], vector [*shape]) → H_S · vector``: the mean Hessian of the samples' losses times a vector."""


class LiSSA:
    """The estimator's settings (defaults: DEALRec's ``recursion_depth`` 5000, ``damp`` 0.01, ``scale`` 25, one
    repeat, one sample per step).

    Args:
        depth: recursion steps T.
        damping: the ``damping`` of the recursion (adds ``damping · scale`` to the Hessian's diagonal).
        scale: divides each Hessian-vector product; must exceed the sampled Hessians' largest eigenvalue.
        repeats: independent recursions averaged.
        samples_per_step: samples whose mean Hessian each step uses (1: stochastic LiSSA as DEALRec).
        seed: seed of the sample draws.
    """

    def __init__(self, depth: int = 5000, damping: float = 0.01, scale: float = 25.0, repeats: int = 1,
                 samples_per_step: int = 1, seed: int = 0) -> None:  # fmt: skip
        if depth < 1 or repeats < 1 or samples_per_step < 1:
            raise ValueError(f"depth, repeats and samples_per_step must be >= 1, got {depth}, {repeats}, {samples_per_step}")
        if not 0.0 <= damping < 1.0 or scale <= 0:
            raise ValueError(f"damping must be in [0, 1) and scale > 0, got {damping}, {scale}")
        self.depth, self.damping, self.scale, self.repeats = depth, damping, scale, repeats
        self.samples_per_step, self.seed = samples_per_step, seed

    def settings(self) -> dict[str, float | int]:
        return {"depth": self.depth, "damping": self.damping, "scale": self.scale, "repeats": self.repeats,
                "samples_per_step": self.samples_per_step, "seed": self.seed}  # fmt: skip

    def solve(self, hvp: HessianVectorProduct, v: torch.Tensor, n_samples: int, progress: bool = False) -> torch.Tensor:
        """``(H + damping · scale · I)⁻¹ v`` from ``depth`` steps on samples drawn uniformly from ``n_samples``,
        averaged over ``repeats``."""
        from tqdm.auto import tqdm

        generator = torch.Generator().manual_seed(self.seed)
        total = torch.zeros_like(v)
        bar = tqdm(total=self.depth * self.repeats, desc="LiSSA H⁻¹v", unit="step", disable=not progress, leave=False)
        for _ in range(self.repeats):
            h = v.clone()
            for step in range(self.depth):
                if self.samples_per_step == 1:
                    samples = torch.randint(0, n_samples, (1,), generator=generator)
                else:  # without replacement: samples_per_step ≥ n_samples is the full-batch Hessian
                    samples = torch.randperm(n_samples, generator=generator)[: self.samples_per_step]
                h = v + (1.0 - self.damping) * h - hvp(samples, h) / self.scale
                if step % 100 == 0 and not torch.isfinite(h).all():
                    raise RunError(f"LiSSA diverged at step {step}: raise scale ({self.scale:g}) above the Hessian's "
                                   "largest eigenvalue, or raise damping")  # fmt: skip
                bar.update(1)
            if not torch.isfinite(h).all():
                raise RunError(f"LiSSA diverged: raise scale ({self.scale:g}) or damping ({self.damping:g})")
            total += h / self.scale
        bar.close()
        return total / self.repeats
