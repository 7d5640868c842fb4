"""``--algo=ac``: deterministic actor-critic (DDPG with TD3's corrections).

Implements the agent interface of :mod:`jaxrl_lite.agents`; see ``train.py``.
"""
from jaxrl_lite.agents.actor_critic.train import (  # noqa: F401
    NAME, Config, TrainState, check_env, checkpoint_state, env_steps_per_iteration, init,
    make_train_iteration, policy_parts, restore_state)
