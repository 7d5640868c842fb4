"""A study, not what ships: magnitude pruning of the actor in JAX, with distillation
fine-tuning (the shipped ``pruned_int8`` removes whole units: export/convert/structured.py).

tensorflow-model-optimization needs the legacy tf_keras, so the actor is pruned
here, before jax2tf: every Dense kernel (biases and LayerNorm are kept) is
pruned per layer to the target sparsity on a gradual cubic schedule
(Zhu & Gupta 2017: s_k = s * (1 - (1 - k/K)^3)), and between mask updates the
surviving weights are fine-tuned with Adam to reproduce the ORIGINAL actor's
actions on collected real observations (mean squared action error). The last
third of the steps fine-tune at the final sparsity. Pruned weights are exact
zeros, so they stay zeros through conversion (int8 zero point 0 for weights).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from export.convert.finetune import FinetuneConfig
from jaxrl_lite.blocks.policy import PolicySpec, deterministic_action


@dataclasses.dataclass(kw_only=True)
class PruneConfig(FinetuneConfig):
    """steps: Adam steps in all; mask_updates: K (the rest: FinetuneConfig)."""

    sparsity: float = 0.5
    mask_updates: int = 10

    def __post_init__(self):
        if not (0.0 <= float(self.sparsity) < 1.0):
            raise ValueError(f"prune sparsity must be in [0, 1), got {self.sparsity}")
        if self.mask_updates < 1:
            raise ValueError(f"invalid PruneConfig {self}")
        super().__post_init__()


def _is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "kernel"


def schedule(k: int, num_updates: int, final: float) -> float:
    """Cubic sparsity after mask update k (1..K): final * (1 - (1 - k/K)^3)."""
    return float(final) * (1.0 - (1.0 - min(k, num_updates) / num_updates) ** 3)


def magnitude_masks(params, sparsity: float):
    """Per-kernel masks (float32 1/0) zeroing the ``round(sparsity * size)`` smallest
    |weights| of every Dense kernel; ones for all other leaves."""

    def mask(path, x):
        x = np.asarray(x)
        if not _is_kernel(path) or sparsity <= 0:
            return np.ones_like(x, np.float32)
        k = int(round(sparsity * x.size))
        m = np.ones(x.size, np.float32)
        if k > 0:  # stable ordering: ties broken by index, deterministic
            m[np.argsort(np.abs(x).ravel(), kind="stable")[:k]] = 0.0
        return m.reshape(x.shape)

    return jax.tree_util.tree_map_with_path(mask, params)


def kernel_sparsity(params) -> float:
    """Fraction of exact zeros over all Dense kernels."""
    leaves = [np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(params)
              if _is_kernel(p)]
    return float(sum(int(np.sum(x == 0)) for x in leaves) / sum(x.size for x in leaves))


def prune_and_distill(spec: PolicySpec, actor_params, norm, obs: np.ndarray,
                      config: PruneConfig) -> tuple[dict, dict]:
    """-> (pruned params, report). ``obs`` float32 [N, obs_dim]: real observations.

    The report has the schedule, the loss curve summary, and the one-shot
    (prune without fine-tuning) parameters' training-set action MAE for comparison.
    """
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), actor_params)
    norm = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), norm)
    obs = jnp.asarray(obs, jnp.float32)
    act = jax.jit(lambda p, o: deterministic_action(spec, p, norm, o))
    teacher = act(params, obs)

    one_shot = jax.tree_util.tree_map(
        lambda p, m: p * m, params, magnitude_masks(params, config.sparsity))
    one_shot_mae = float(jnp.mean(jnp.abs(act(one_shot, obs) - teacher)))
    if config.sparsity == 0 or config.steps == 0:
        return (jax.tree_util.tree_map(np.asarray, one_shot),
                {"sparsity": kernel_sparsity(one_shot), "one_shot_train_mae": one_shot_mae,
                 "distilled_train_mae": one_shot_mae, "steps": 0})

    tx = optax.adam(optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.1))
    prune_steps = int(config.steps * 2 / 3)
    seg = max(prune_steps // config.mask_updates, 1)

    def loss_fn(p, o, target):
        return jnp.mean((act(p, o) - target) ** 2)

    @jax.jit
    def segment(p, opt_state, mask, key, n_steps_mask):
        def step(carry, k):
            p, opt_state = carry
            idx = jax.random.randint(k, (config.batch,), 0, obs.shape[0])
            loss, g = jax.value_and_grad(loss_fn)(p, obs[idx], teacher[idx])
            g = jax.tree_util.tree_map(lambda gi, m: gi * m, g, mask)
            upd, opt_state = tx.update(g, opt_state, p)
            p = jax.tree_util.tree_map(lambda x, m: x * m, optax.apply_updates(p, upd), mask)
            return (p, opt_state), loss
        keys = jax.random.split(key, n_steps_mask.shape[0])
        (p, opt_state), losses = jax.lax.scan(step, (p, opt_state), keys)
        return p, opt_state, losses

    key = jax.random.PRNGKey(config.seed)
    opt_state = tx.init(params)
    p = params
    history = []
    for k in range(1, config.mask_updates + 1):
        s_k = schedule(k, config.mask_updates, config.sparsity)
        mask = jax.tree_util.tree_map(jnp.asarray, magnitude_masks(p, s_k))
        p = jax.tree_util.tree_map(lambda x, m: x * m, p, mask)
        n = seg if k < config.mask_updates else config.steps - seg * (config.mask_updates - 1)
        key, sub = jax.random.split(key)
        p, opt_state, losses = segment(p, opt_state, mask, sub, jnp.zeros((n,)))
        history.append({"update": k, "sparsity": round(s_k, 4), "steps": int(n),
                        "loss_end": float(losses[-1])})
    mae = float(jnp.mean(jnp.abs(act(p, obs) - teacher)))
    p = jax.tree_util.tree_map(np.asarray, p)
    return p, {"sparsity": kernel_sparsity(p), "one_shot_train_mae": one_shot_mae,
               "distilled_train_mae": mae, "steps": config.steps, "schedule": history}
