"""Hyper-parameters of the actor-critic: one ``Config``, validated once.

Every field is an absl flag of ``experiments/train.py`` (``--algo=ac``). Plain TD3
is the defaults; plain DDPG is ``--twin_critics=false --target_smoothing=false
--policy_delay=1``; ``--crossq`` selects the CrossQ critic (``crossq.py``).
Shapes: N = num_envs, B = batch_size, C = buffer_size.
"""
from __future__ import annotations

import dataclasses
import math

from jaxrl_lite.agents.interface import flag_field as _f
from jaxrl_lite.blocks.policy import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class Config:
    """Hyper-parameters of the actor-critic (each field is an absl flag)."""

    num_envs: int = _f(16, "parallel training environments")
    total_steps: int = _f(1_000_000, "env steps to train for (sets the noise decay horizon)")
    steps_per_iteration: int = _f(
        50, "vectorised env steps per compiled iteration (env steps = num_envs x this)")
    buffer_size: int = _f(1_000_000, "replay buffer capacity in transitions "
                          "(Ant: 4*(2*105+8+3) B = 884 B each, 1M ~ 0.9 GB)")
    batch_size: int = _f(256, "transitions per gradient update")
    hidden: tuple[int, ...] = _f((256, 256), "hidden layer sizes of the actor (and of the "
                                 "critics unless critic_hidden is set)")
    critic_hidden: tuple[int, ...] = _f((), "hidden layer sizes of the critics "
                                        "(empty = same as hidden)")
    activation: str = _f("relu", "hidden activation: relu|tanh|elu|silu")
    actor_layer_norm: bool = _f(False, "LayerNorm in the actor's hidden layers "
                                "(exported with the actor)")
    critic_layer_norm: bool = _f(True, "LayerNorm in the critics' hidden layers")
    actor_learning_rate: float = _f(3e-4, "Adam learning rate of the actor")
    critic_learning_rate: float = _f(3e-4, "Adam learning rate of the critics")
    max_grad_norm: float = _f(0.0, "clip gradients to this global norm (0 = no clipping)")
    discount: float = _f(0.99, "discount factor gamma, in [0, 1)")
    tau: float = _f(0.005, "Polyak factor of the target networks, in (0, 1]")
    reward_scale: float = _f(1.0, "multiply rewards by this before learning")
    crossq: bool = _f(False, "CrossQ critic: no target networks; BatchRenorm critics "
                      "evaluated on [s; s'] in one pass (target from the s' half, gradient "
                      "stopped)")
    adam_b1: float = _f(0.9, "Adam beta1 of both optimisers (CrossQ uses 0.5)")
    twin_critics: bool = _f(True, "TD3 clipped double-Q: two critics, target uses their min")
    target_smoothing: bool = _f(True, "TD3 target policy smoothing noise")
    target_noise: float = _f(0.2, "std of the target policy smoothing noise")
    target_noise_clip: float = _f(0.5, "clip of the target policy smoothing noise")
    policy_delay: int = _f(2, "critic updates per actor/target update (TD3: 2, DDPG: 1)")
    exploration_noise: float = _f(0.2, "initial std of the Gaussian exploration noise")
    exploration_noise_final: float = _f(0.05, "final std of the exploration noise")
    exploration_decay_steps: int = _f(
        0, "env steps of linear exploration-noise decay after warm-up (0 = total_steps)")
    warmup_steps: int = _f(25_000, "env steps of uniform random actions before learning")
    updates_per_step: int = _f(
        0, "gradient updates per vectorised env step (0 = round(utd_ratio * num_envs))")
    utd_ratio: float = _f(1.0, "gradient updates per collected transition, used when "
                          "updates_per_step=0")
    observation_features: int = _f(
        0, "use only the first K observation features (0 = all): the input rows of the "
        "other features stay zero in actor and critics, so the exported policy still takes "
        "the full observation and ignores them exactly (Ant-v5: 27 = positions and "
        "velocities, without the 78 contact forces)")
    normalize_observations: bool = _f(True, "running mean/std observation normalisation")
    checkpoint_replay_buffer: bool = _f(
        True, "save the replay buffer in checkpoints (needed for a bit-exact --resume; "
        "costs buffer_size x transition bytes)")

    def validate(self) -> None:
        """One-line ValueError naming the first bad field; the only check of the fields."""
        def fail(name, want):
            raise ValueError(f"{name} must be {want}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for name in ("num_envs", "total_steps", "steps_per_iteration", "buffer_size",
                     "batch_size", "policy_delay"):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= 1):
                fail(name, "a positive integer")
        for name in ("exploration_decay_steps", "warmup_steps", "updates_per_step",
                     "observation_features"):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= 0):
                fail(name, "a non-negative integer")
        for name in ("actor_learning_rate", "critic_learning_rate", "reward_scale"):
            if not (is_number(getattr(self, name)) and getattr(self, name) > 0):
                fail(name, "a positive number")
        for name in ("max_grad_norm", "target_noise", "target_noise_clip",
                     "exploration_noise", "exploration_noise_final", "utd_ratio"):
            if not (is_number(getattr(self, name)) and getattr(self, name) >= 0):
                fail(name, "a non-negative number")
        for name in ("hidden", "critic_hidden"):
            sizes = getattr(self, name)
            if (name == "hidden" and not sizes) or any(not is_int(h) or h < 1 for h in sizes):
                fail(name, "positive layer sizes like 256,256"
                     + (" (or empty)" if name == "critic_hidden" else ""))
        if not 0.0 <= self.adam_b1 < 1.0:
            fail("adam_b1", "in [0, 1)")
        if not 0.0 < self.tau <= 1.0:
            fail("tau", "in (0, 1]")
        if not 0.0 <= self.discount < 1.0:
            fail("discount", "in [0, 1)")
        if self.activation not in ACTIVATIONS:
            fail("activation", f"one of {', '.join(ACTIVATIONS)}")
        if self.buffer_size < max(self.batch_size, self.num_envs):
            raise ValueError(f"buffer_size ({self.buffer_size}) must be >= batch_size "
                             f"({self.batch_size}) and >= num_envs ({self.num_envs}): one env "
                             f"step inserts num_envs transitions")
        if self.updates_per_step == 0 and round(self.utd_ratio * self.num_envs) < 1:
            raise ValueError(f"utd_ratio * num_envs must round to >= 1 update per step, got "
                             f"{self.utd_ratio} * {self.num_envs}; raise utd_ratio or set "
                             f"updates_per_step")
        if self.exploration_noise_final > self.exploration_noise:
            raise ValueError(f"exploration_noise_final ({self.exploration_noise_final}) must "
                             f"be <= exploration_noise ({self.exploration_noise})")

    # -- derived ------------------------------------------------------------
    def num_updates_per_step(self) -> int:
        if self.updates_per_step > 0:
            return self.updates_per_step
        return max(1, round(self.utd_ratio * self.num_envs))

    def num_critics(self) -> int:
        return 2 if self.twin_critics else 1

    def critic_sizes(self) -> tuple[int, ...]:
        return tuple(self.critic_hidden) or tuple(self.hidden)
