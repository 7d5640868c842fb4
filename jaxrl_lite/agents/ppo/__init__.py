"""Vectorised PPO (Brax-style split): ``networks`` (tanh-Gaussian policy, value
MLP), ``losses`` (GAE, clipped surrogate), ``train`` (Config, TrainState, the
jitted iteration). Implements the interface in ``jaxrl_lite.agents``."""
from jaxrl_lite.agents.ppo.train import (  # noqa: F401
    NAME, Config, TrainState, env_steps_per_iteration, init, make_train_iteration,
    num_iterations, policy_parts)
