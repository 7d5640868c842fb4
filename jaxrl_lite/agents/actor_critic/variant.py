"""The one interface between the TD3 core and a way of training the critics.

A :class:`CriticVariant` says which critic network to build and how its loss is
formed; everything else (collection, replay, actor update, delays) is the core's
(``td3.py``). Variants: TD3's target networks (``losses.TD3``) and CrossQ's
batch-renormalised critics without targets (``crossq.CROSSQ``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax

from jaxrl_lite.blocks.policy import PolicySpec
from jaxrl_lite.blocks.replay import Transition

# loss_fn(critic_params) -> (loss [], aux {"q_mean" [], "target" [B], optional
# "batch_stats": running statistics the update keeps})
LossFn = Callable[[Any], tuple[jax.Array, dict]]


class CriticVariant(NamedTuple):
    """name: for logs. module(config, obs_dim) -> one critic network ([obs; action] -> Q)
    that leaves the ignored observation features out of its first product.
    loss(config, spec, critic, train_state, batch, key) -> LossFn: the critic loss
    for this batch as a function of the critic params (``key`` for target noise).
    uses_targets: whether target networks exist and are Polyak-averaged."""

    name: str
    module: Callable[[Any, int], nn.Module]
    loss: Callable[[Any, PolicySpec, nn.Module, Any, Transition, jax.Array], LossFn]
    uses_targets: bool
