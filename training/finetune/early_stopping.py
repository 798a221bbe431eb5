"""Stop when the eval loss has not improved for ``patience`` evaluations; remember the best."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class EarlyStopping:
    patience: int  # 0: never stop early
    min_improvement: float = 0.0
    best_loss: float = field(default=math.inf, init=False)
    best_step: int = field(default=0, init=False)
    evaluations_since_best: int = field(default=0, init=False)

    def record(self, step: int, loss: float) -> bool:
        """Record an evaluation; True when it is the best so far (keep this adapter)."""
        if loss < self.best_loss - self.min_improvement:
            self.best_loss, self.best_step = loss, step
            self.evaluations_since_best = 0
            return True
        self.evaluations_since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.evaluations_since_best >= self.patience
