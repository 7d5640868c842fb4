"""The deployable actor, shared by PPO, the actor-critic and the exporter.

Every algorithm's deterministic policy is the same function:

    action = tanh(ActorTorso(normalize(obs)))       float32 [..., act_dim] in [-1, 1]

mapped onto the task's action bounds when they are not [-1, 1] (Humanoid's +-0.4,
Pusher's +-2): ``low + (tanh + 1) * (high - low) / 2``. Agents act in [-1, 1]; the
training env maps their actions the same way (:class:`ScaledActions`).

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
import numpy as np

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
    action_low: tuple[float, ...] | None = None   # None: [-1, 1]
    action_high: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: "
                             f"{', '.join(ACTIVATIONS)}")
        if not self.hidden_sizes or any(int(h) < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive ints, got {self.hidden_sizes}")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if (self.action_low is None) != (self.action_high is None):
            raise ValueError("give both action_low and action_high, or neither")
        if self.action_low is not None:
            low, high = (tuple(float(x) for x in b) for b in (self.action_low, self.action_high))
            if len(low) != self.act_dim or len(high) != self.act_dim or not all(
                    lo < hi for lo, hi in zip(low, high)):
                raise ValueError(f"action bounds must be act_dim={self.act_dim} pairs with "
                                 f"low < high, got {low}, {high}")
            if all(lo == -1.0 and hi == 1.0 for lo, hi in zip(low, high)):
                low = high = None  # [-1, 1]: nothing to map
            object.__setattr__(self, "action_low", low)
            object.__setattr__(self, "action_high", high)

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

    def with_bounds(self, low, high) -> "PolicySpec":
        """This spec acting within [low, high] (float [act_dim] each; finite)."""
        return dataclasses.replace(self, action_low=tuple(np.asarray(low, float).tolist()),
                                   action_high=tuple(np.asarray(high, float).tolist()))


def to_bounds(spec: PolicySpec, action: jax.Array) -> jax.Array:
    """Actions in [-1, 1] [..., act_dim] -> the spec's bounds (identity without them)."""
    if spec.action_low is None:
        return action
    low = jnp.asarray(spec.action_low, jnp.float32)
    high = jnp.asarray(spec.action_high, jnp.float32)
    return action * ((high - low) / 2) + (high + low) / 2


class SkipRowsDense(nn.Module):
    """``nn.Dense`` (same parameters, names and initialisation) whose kernel rows
    ``skip = (start, stop)`` are held at zero by the caller and left out of the product:
    the output is the same, the matmul has ``stop - start`` fewer inputs. x [..., in]
    -> [..., features]; kernel [in, features]."""

    features: int
    skip: tuple[int, int] = (0, 0)
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        start, stop = self.skip
        if stop > start:
            x = jnp.concatenate([x[..., :start], x[..., stop:]], axis=-1)
            kernel = jnp.concatenate([kernel[:start], kernel[stop:]], axis=0)
        return x @ kernel + bias


def hidden_dense(features: int, index: int, skip: tuple[int, int] = (0, 0)) -> nn.Module:
    """Hidden layer ``index`` of a network (orthogonal init, named ``hidden_<index>``):
    the first layer leaves input rows ``skip`` out of its product when it is non-empty
    (the same parameters either way); every other layer is a plain ``nn.Dense``."""
    init = nn.initializers.orthogonal(jnp.sqrt(2.0))
    if index == 0 and skip[1] > skip[0]:
        return SkipRowsDense(features, skip=tuple(skip), kernel_init=init, name="hidden_0")
    return nn.Dense(features, kernel_init=init, name=f"hidden_{index}")


class MLP(nn.Module):
    """Dense layers with optional LayerNorm; last layer linear. ``skip_input_rows``
    (start, stop): input features the first layer never reads (its kernel rows there
    must stay zero; the actor-critic's ``observation_features``)."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "tanh"
    layer_norm: bool = False
    out_scale: float = 1.0  # init scale of the last layer (small for policies)
    skip_input_rows: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for i, h in enumerate(self.hidden_sizes):
            x = hidden_dense(h, i, self.skip_input_rows)(x)
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
    """Raw obs float32 [..., obs_dim] -> action float32 [..., act_dim] within the
    spec's bounds ([-1, 1] without them)."""
    x = normalizer.normalize(norm_state, obs, clip=clip_observations)
    return to_bounds(spec, jnp.tanh(actor_torso(spec).apply(actor_params, x)))


class ScaledActions:
    """An env whose ``step`` takes actions in [-1, 1] and hands the wrapped env
    ``to_bounds(spec, action)``: what the agents act in, mapped as the deployed policy
    maps it. Everything else is the wrapped env's."""

    def __init__(self, env, spec: PolicySpec):
        self.env, self.spec = env, spec

    def __getattr__(self, name):
        return getattr(self.__dict__["env"], name)

    def step(self, state, action):
        return self.env.step(state, to_bounds(self.spec, action))
