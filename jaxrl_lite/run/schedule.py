"""When a run does what: iterations between logs, evaluations and checkpoints.

Boundaries are whole iterations, fixed by the config, so a run resumed from a
checkpoint passes the same boundaries as the uninterrupted run (bit-exact
resumes depend on it). No JAX.
"""
from __future__ import annotations

import dataclasses


def _iterations(env_steps: int, steps_per_iter: int) -> int:
    """Env steps rounded up to whole iterations (at least one)."""
    return max(1, -(-env_steps // steps_per_iter))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """steps_per_iter: env steps one iteration consumes. total_iters: the
    training horizon (what the agent's schedules span). checkpoint/log/eval:
    every so many iterations (eval 0 = only at the end, -1 = never). stop: the iteration
    this call stops at (``stop_after_steps`` rounded up to a checkpoint)."""

    steps_per_iter: int
    total_iters: int
    checkpoint: int
    log: int
    eval: int
    stop: int

    @classmethod
    def from_config(cls, config, steps_per_iter: int) -> "Schedule":
        """config: a validated ``TrainConfig``."""
        total = _iterations(config.agent_config.total_steps, steps_per_iter)
        ckpt = _iterations(config.checkpoint_every_steps, steps_per_iter)
        stop = total
        if config.stop_after_steps:
            first = _iterations(config.stop_after_steps, steps_per_iter)
            stop = min(total, -(-first // ckpt) * ckpt)
        return cls(steps_per_iter, total, ckpt, _iterations(config.log_every_steps,
                                                            steps_per_iter),
                   _iterations(config.eval_every_steps, steps_per_iter)
                   if config.eval_every_steps > 0 else config.eval_every_steps, stop)

    def env_steps(self, iteration: int) -> int:
        return iteration * self.steps_per_iter

    def is_checkpoint(self, it: int) -> bool:
        return it % self.checkpoint == 0 or it == self.stop

    @property
    def evaluates(self) -> bool:
        """False when in-training evaluation is off (eval -1)."""
        return self.eval >= 0

    def is_eval(self, it: int) -> bool:
        if not self.evaluates:
            return False
        return bool(self.eval and it % self.eval == 0) or it == self.total_iters

    def is_record(self, it: int) -> bool:
        """Any boundary: a metrics record is written here."""
        return self.is_checkpoint(it) or self.is_eval(it) or it % self.log == 0
