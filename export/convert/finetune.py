"""Settings of the minibatch-Adam fine-tuning that pruning, structured and qat share."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(kw_only=True)
class FinetuneConfig:
    """steps: Adam steps (0 = no fine-tuning); batch: observations per step; lr: peak
    learning rate (cosine-decayed); seed: minibatch sampling."""

    steps: int = 3000
    batch: int = 256
    lr: float = 3e-4
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0 or self.batch < 1 or self.lr <= 0:
            raise ValueError(f"invalid {type(self).__name__} {self}")
