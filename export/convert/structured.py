"""Structured pruning: remove whole hidden units and ship a smaller dense actor.

Unstructured zeros (export/convert/pruning.py) leave every tensor its full shape, so the
TFLite file, the TFLM arena and the latency stay those of the dense model. Here
each hidden layer keeps ``round(keep * width)`` units, so the exported network
is genuinely smaller (e.g. 105-64-64-8 -> 105-25-25-8 at keep=0.39).

Recipe, in ``rounds`` steps from the full width down to the kept width:
  1. importance of unit j of hidden layer l, measured on real visited observations:
         I_lj = mean_obs |a_lj| * ||W_{l+1}[j, :]||_2
     (its activation magnitude times the norm of its outgoing weights: a first-order
     estimate of how much the next layer's input moves without it);
  2. drop the least important units; each dropped unit's MEAN contribution
     mean(a_lj) * W_{l+1}[j, :] is folded into the next layer's bias, so the
     network's average pre-activation is unchanged by the cut;
  3. distil: Adam on the mean squared action error against the ORIGINAL actor.
After the last cut, ``dagger_rounds`` times: roll out the pruned actor itself,
label the observations it visits with the original actor's actions, and distil on
the union (DAgger, Ross et al. 2011): the student's own mistakes lead it to
states the teacher's rollouts never showed, and that is where it falls.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from export.convert.finetune import FinetuneConfig
from export.convert.observations import numpy_policy
from jaxrl_lite.blocks.policy import PolicySpec, deterministic_action


@dataclasses.dataclass(kw_only=True)
class StructuredConfig(FinetuneConfig):
    """keep: fraction of units kept per hidden layer, in (0, 1]; rounds: cuts from full
    to kept width; steps: Adam steps per round (twice that after the last cut and in
    each DAgger round); dagger_rounds: student-rollout relabelling rounds;
    dagger_obs: observations collected per DAgger round (the rest: FinetuneConfig)."""

    keep: float = 0.39
    rounds: int = 4
    lr: float = 1e-3
    dagger_rounds: int = 4
    dagger_obs: int = 4000
    dagger_noise: float = 0.1

    def __post_init__(self):
        if not (0.0 < float(self.keep) <= 1.0):
            raise ValueError(f"prune keep fraction must be in (0, 1], got {self.keep}")
        if self.rounds < 1 or self.dagger_rounds < 0 or self.dagger_obs < 1:
            raise ValueError(f"invalid StructuredConfig {self}")
        super().__post_init__()


def kept_sizes(hidden_sizes, keep: float) -> tuple[int, ...]:
    """Hidden widths after pruning: round(keep * width), at least 1."""
    return tuple(max(1, int(round(keep * h))) for h in hidden_sizes)


def _layers(params) -> dict:
    return params["params"] if "params" in params else params


def hidden_activations(spec: PolicySpec, params, norm, obs: np.ndarray) -> list[np.ndarray]:
    """Post-activation outputs of every hidden layer, float32 [N, width_l] each."""
    return numpy_policy(spec, params, norm, return_hidden=True)(obs)[1]


def unit_importance(spec: PolicySpec, params, norm, obs: np.ndarray) -> list[np.ndarray]:
    """Per hidden layer, [width_l]: mean |activation| times outgoing weight L2 norm."""
    p = _layers(params)
    acts = hidden_activations(spec, params, norm, obs)
    out = []
    for i, a in enumerate(acts):
        nxt = p[f"hidden_{i + 1}"] if i + 1 < len(acts) else p["out"]
        w = np.asarray(nxt["kernel"], np.float64)
        out.append(np.abs(a).mean(0) * np.linalg.norm(w, axis=1))
    return out


def remove_units(spec: PolicySpec, params, keep_idx: list[np.ndarray],
                 mean_acts: list[np.ndarray]) -> tuple[PolicySpec, dict]:
    """Keep units ``keep_idx[l]`` of every hidden layer; the dropped units' mean
    contribution goes into the next layer's bias. Returns (spec, params) of the
    smaller network (numpy float32)."""
    p = _layers(params)
    new: dict = {}
    n = len(spec.hidden_sizes)
    for i in range(n):
        idx = np.sort(np.asarray(keep_idx[i]))
        src = p[f"hidden_{i}"]
        k = np.asarray(src["kernel"], np.float32)
        if i > 0:
            k = k[np.sort(np.asarray(keep_idx[i - 1]))]
        new[f"hidden_{i}"] = {"kernel": k[:, idx], "bias": np.asarray(src["bias"])[idx]}
        if f"norm_{i}" in p:
            new[f"norm_{i}"] = {key: np.asarray(v)[idx] for key, v in p[f"norm_{i}"].items()}
    for i in range(n):  # fold dropped units' mean output into the next layer's bias
        name = f"hidden_{i + 1}" if i + 1 < n else "out"
        w = np.asarray(p[name]["kernel"], np.float32)
        dropped = np.setdiff1d(np.arange(w.shape[0]), keep_idx[i])
        bias = np.asarray(p[name]["bias"], np.float32) + mean_acts[i][dropped] @ w[dropped]
        if name == "out":
            kernel = w[np.sort(np.asarray(keep_idx[i]))]
            new["out"] = {"kernel": kernel, "bias": bias.astype(np.float32)}
        else:
            delta = (bias - np.asarray(p[name]["bias"], np.float32))
            new[name]["bias"] = new[name]["bias"] + delta[np.sort(np.asarray(keep_idx[i + 1]))]
    new = {name: {k: np.asarray(v, np.float32) for k, v in d.items()} for name, d in new.items()}
    widths = tuple(int(len(np.asarray(ix))) for ix in keep_idx)
    spec = dataclasses.replace(spec, hidden_sizes=widths)
    return spec, ({"params": new} if "params" in params else new)


def distill(spec: PolicySpec, params, norm, obs: np.ndarray, targets: np.ndarray, steps: int,
            batch: int, lr: float, seed: int):
    """Adam on mean((actor(obs) - targets)^2) over random minibatches; -> (params, loss).

    obs float32 [N, obs_dim], targets float32 [N, act_dim]: the teacher's actions."""


    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    if steps == 0:
        return jax.tree_util.tree_map(np.asarray, params), float("nan")
    norm = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), norm)
    obs = jnp.asarray(obs, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))

    def loss_fn(p, o, t):
        return jnp.mean((deterministic_action(spec, p, norm, o) - t) ** 2)

    @jax.jit
    def run(p, key):
        def step(carry, k):
            p, s = carry
            idx = jax.random.randint(k, (batch,), 0, obs.shape[0])
            loss, g = jax.value_and_grad(loss_fn)(p, obs[idx], targets[idx])
            upd, s = tx.update(g, s, p)
            return (optax.apply_updates(p, upd), s), loss
        (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), jax.random.split(key, steps))
        return p, losses[-max(1, steps // 20):].mean()

    p, loss = run(params, jax.random.PRNGKey(seed))
    return jax.tree_util.tree_map(np.asarray, p), float(loss)


def structured_prune(spec: PolicySpec, params, norm, obs: np.ndarray, config: StructuredConfig,
                     collect: Callable | None = None) -> tuple[PolicySpec, dict, dict]:
    """Prune ``params`` to ``kept_sizes(spec.hidden_sizes, config.keep)`` and distil.

    obs: float32 [N, obs_dim] real observations visited by the original actor.
    collect(policy_fn, num_obs, seed) -> float32 [num_obs, obs_dim] rolls out a numpy
    policy (DAgger rounds; skipped when None). Returns (spec, params, report).
    """
    teacher = numpy_policy(spec, params, norm)
    targets = teacher(obs)
    full = tuple(spec.hidden_sizes)
    final = kept_sizes(full, config.keep)
    report: dict = {"hidden_sizes_before": list(full), "hidden_sizes_after": list(final),
                    "keep": config.keep, "importance": "mean|activation| x outgoing L2 norm",
                    "rounds": []}
    cur_spec, cur = spec, params
    for r in range(1, config.rounds + 1):
        widths = [int(round(h - (h - f) * r / config.rounds)) for h, f in zip(full, final)]
        imp = unit_importance(cur_spec, cur, norm, obs)
        keep_idx = [np.argsort(-v, kind="stable")[:w] for v, w in zip(imp, widths)]
        means = [a.mean(0) for a in hidden_activations(cur_spec, cur, norm, obs)]
        cur_spec, cur = remove_units(cur_spec, cur, keep_idx, means)
        cut_mae = float(np.abs(numpy_policy(cur_spec, cur, norm)(obs) - targets).mean())
        steps = config.steps * (2 if r == config.rounds else 1)
        cur, loss = distill(cur_spec, cur, norm, obs, targets, steps, config.batch, config.lr,
                            config.seed * 1000 + r)
        report["rounds"].append({"round": r, "hidden_sizes": widths, "mae_after_cut":
                                 cut_mae, "steps": steps, "loss_end": loss})
    data_obs, data_tgt = obs, targets
    for d in range(config.dagger_rounds if collect is not None else 0):
        visited = collect(numpy_policy(cur_spec, cur, norm), config.dagger_obs,
                          config.seed * 1000 + 100 + d)
        data_obs = np.concatenate([data_obs, visited])
        data_tgt = np.concatenate([data_tgt, teacher(visited)])
        before = float(np.abs(numpy_policy(cur_spec, cur, norm)(visited)
                              - teacher(visited)).mean())
        cur, loss = distill(cur_spec, cur, norm, data_obs, data_tgt, 2 * config.steps,
                            config.batch, config.lr, config.seed * 1000 + 200 + d)
        report["rounds"].append({"dagger": d + 1, "visited_obs": int(len(visited)),
                                 "mae_on_visited_before": before, "loss_end": loss})
    report["train_mae"] = float(np.abs(numpy_policy(cur_spec, cur, norm)(obs) - targets).mean())
    return cur_spec, cur, report
