"""``--algo=ac``: deterministic actor-critic (DDPG with TD3's corrections).

``config.py`` (the flags, validated once) and ``state.py`` (train state, init, what
is saved and deployed) feed the core ``td3.py`` (collect, replay, critic and actor
updates, targets, one jitted iteration), where the critic learns through a
``variant.CriticVariant``: TD3's target networks (``losses.py``) or CrossQ's
(``crossq.py``). Networks in ``networks.py``. Implements the agent interface of
:mod:`jaxrl_lite.agents.interface`.
"""
from jaxrl_lite.agents.actor_critic.config import Config  # noqa: F401
from jaxrl_lite.agents.actor_critic.state import (  # noqa: F401
    TrainState, check_env, checkpoint_state, env_steps_per_iteration, init, policy_parts,
    restore_state)
from jaxrl_lite.agents.actor_critic.td3 import make_train_iteration  # noqa: F401

NAME = "ac"
