"""An exponential moving average of a model's weights and batch-norm statistics.

``--ema-decay`` keeps, beside the weights the optimiser moves, an average of them
over the last ~1/(1 - decay) steps; the average is what a phase validates and
keeps as its best. It smooths the noise the last steps leave in the weights and,
above all, in the batch norms' running statistics (each is an average over the
last ~10 batches of randomly perturbed crops), which moved the validation error
by tenths of a point between validations late in a phase. Early on, the decay is
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average is not
held back by the weights the phase started from.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from model.dan import DAN


class WeightAverage:
    """An averaged copy of ``model`` (``.model``), moved towards it by ``update``."""

    def __init__(self, model: DAN, decay: float, saved: dict[str, Any] | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.updates = int(saved["updates"])
        # state_dict() tensors share storage with the parameters and buffers: pair them once.
        pairs = list(
            zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        )
        self._floats = [(a, m) for a, m in pairs if a.is_floating_point()]
        self._others = [(a, m) for a, m in pairs if not a.is_floating_point()]  # batch counters

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the model's current weights."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged = [a for a, _ in self._floats]
        current = [m.to(a.dtype) for a, m in self._floats]
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        for a, m in self._others:
            a.copy_(m)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume the average (``saved`` of the constructor)."""
        return {"model": self.model.state_dict(), "updates": self.updates}
