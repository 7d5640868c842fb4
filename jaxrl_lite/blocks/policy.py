"""The deployable actor, shared by PPO, the actor-critic and the exporter.

Every algorithm's deterministic policy is the same function:

    action = tanh(ActorTorso(normalize(obs)))       float32 [..., act_dim] in [-1, 1]

PPO samples around the torso output (``loc``) with a tanh-squashed Gaussian;
the actor-critic uses ``tanh(loc)`` directly. What export needs is a
:class:`PolicySpec` (JSON-serialisable) plus the actor params and the
normaliser statistics; ``deterministic_action`` is the single definition of
the deployed function.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl_lite.blocks import normalizer

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "silu": nn.silu}


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """Static description of the actor network (saved as JSON with checkpoints)."""

    env: str
    obs_dim: int
    act_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "tanh"
    layer_norm: bool = False

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: "
                             f"{', '.join(ACTIVATIONS)}")
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive ints, got {self.hidden_sizes}")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "PolicySpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"policy spec has unknown fields {sorted(unknown)}")
        d = dict(d)
        d["hidden_sizes"] = tuple(d.get("hidden_sizes", (256, 256)))
        return cls(**d)


class MLP(nn.Module):
    """Dense layers with optional LayerNorm; last layer linear."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "tanh"
    layer_norm: bool = False
    out_scale: float = 1.0  # init scale of the last layer (small for policies)

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for i, h in enumerate(self.hidden_sizes):
            x = nn.Dense(h, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)),
                         name=f"hidden_{i}")(x)
            if self.layer_norm:
                x = nn.LayerNorm(name=f"norm_{i}")(x)
            x = act(x)
        return nn.Dense(self.out_size,
                        kernel_init=nn.initializers.orthogonal(self.out_scale),
                        name="out")(x)


def actor_torso(spec: PolicySpec) -> MLP:
    """The network whose output ``loc`` [..., act_dim] gives actions tanh(loc)."""
    return MLP(hidden_sizes=spec.hidden_sizes, out_size=spec.act_dim,
               activation=spec.activation, layer_norm=spec.layer_norm, out_scale=0.01)


def init_actor_params(spec: PolicySpec, key: jax.Array):
    return actor_torso(spec).init(key, jnp.zeros((1, spec.obs_dim), jnp.float32))


def deterministic_action(spec: PolicySpec, actor_params, norm_state: normalizer.NormalizerState,
                         obs: jax.Array, clip_observations: bool = True) -> jax.Array:
    """Raw obs float32 [..., obs_dim] -> action float32 [..., act_dim] in [-1, 1]."""
    x = normalizer.normalize(norm_state, obs, clip=clip_observations)
    return jnp.tanh(actor_torso(spec).apply(actor_params, x))
