"""Cost of one actor-critic gradient update, against the dense matmuls of its own networks.

    python -m experiments.bench_ac_update --recipes=td3,td3_no_contact,crossq \
        [--updates=40] [--repeats=15] [--out=bench_ac_update.json]

For each recipe (``experiments/configs/ac_recipes/NAME.flags`` or a flag-file path):
a replay buffer of the recipe's size filled with random transitions, then a jitted
``lax.scan`` of ``--updates`` updates exactly as the training iteration runs them
(buffer closed over, not carried). Reports ms per update, updates/s, sampled
transitions per second, XLA's FLOP count of one update (``cost_analysis``), the
GFLOP/s reached and that as a fraction of the same run's dense float32 matmul
ceiling (best of 1024^2 and 2048^2 products on all cores).

The figure the learning issue asks for is the update's cost against the dense-matmul
ceiling **of its own networks** (``of its matmuls``): every ``dot_general`` one update
executes (forward and backward, the actor's weighted by 1/policy_delay; see
``experiments/network_matmuls.py``), timed alone on random operands of the same shapes
in the same kind of scan, divided by the update's time. 1.0 would mean the update costs
nothing but its matmuls. ``GFLOP/s`` and ``of peak`` count those weighted matmul FLOPs
(XLA's cost analysis, also printed, counts the policy-delay branch on every update).

The two are timed in ``--repeats`` paired rounds (matmuls alone and the update back to
back, the order flipping each round). The figure is the ratio of their best times over
those rounds, as before, but both bests now come from the same stretch of seconds: before,
all matmul scans ran, then a compile of tens of seconds, then all update scans, and this
machine's speed drifts on that scale. The spread printed beside it is the median and range
of the single rounds' ratios (how much one round's interference moves a ratio).
"""
from __future__ import annotations

import fractions
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from experiments import network_matmuls
from experiments.ac_recipes import recipe_config, recipe_env
from jaxrl_lite import envs
from jaxrl_lite.agents.actor_critic import config as ac_config
from jaxrl_lite.agents.actor_critic import state as ac_state
from jaxrl_lite.agents.actor_critic import td3
from jaxrl_lite.blocks import replay

_RECIPES = flags.DEFINE_list("recipes", ["td3", "td3_no_contact", "crossq"],
                             "Recipe names or flag-file paths.")
_UPDATES = flags.DEFINE_integer("updates", 40, "Updates per timed scan.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 15, "Paired rounds (matmuls alone, then the update, alternating order).")
_OUT = flags.DEFINE_string("out", "bench_ac_update.json", "JSON output ('' to skip).")


def matmul_ceiling(repeats: int = 5) -> float:
    """Best float32 GFLOP/s of a square matmul on this device."""
    best = 0.0
    for m in (1024, 2048):
        a = jnp.ones((m, m), jnp.float32)
        f = jax.jit(lambda a: a @ a)
        f(a).block_until_ready()
        for _ in range(repeats):
            t = time.perf_counter()
            f(a).block_until_ready()
            best = max(best, 2 * m ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def time_updates(config, env_name: str, n: int, repeats: int) -> dict:
    env = envs.make(env_name, backend="mujoco", num_envs=config.num_envs)
    key = jax.random.PRNGKey(0)
    ts = ac_state.init(config, env, key)
    data = jax.tree_util.tree_map(
        lambda x: jax.random.normal(key, x.shape, x.dtype), ts.buffer.data)
    data = data.replace(terminated=jnp.zeros_like(data.terminated),
                        truncated=jnp.zeros_like(data.truncated))
    buffer = replay.ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32),
                                 size=jnp.asarray(ts.buffer.capacity, jnp.int32))
    update = td3.make_update(config, ac_state.policy_spec(config, env.observation_size,
                                                         env.action_size))
    small = ts.replace(buffer=None, env_state=None)

    def one(small, k):
        out, m = update(small.replace(buffer=buffer), k)
        return out.replace(buffer=None), m["loss/critic"]

    flops = jax.jit(one).lower(small, key).compile().cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))
    dots = network_matmuls.collect(one, small, key,
                                   cond_weight=fractions.Fraction(1, config.policy_delay))
    dots_once, calls = network_matmuls.dots_timer(dots, n)
    matmul_flops = network_matmuls.total_flops(dots)
    many = jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, n)))
    jax.block_until_ready(many(small, key))

    def update_once(r: int) -> float:
        t = time.perf_counter()
        jax.block_until_ready(many(small, jax.random.fold_in(key, r)))
        return time.perf_counter() - t

    rounds = network_matmuls.paired_rounds(lambda r: dots_once() / calls,
                                           lambda r: update_once(r) / n, repeats)
    dots_s = min(d for d, _ in rounds)
    best = min(u for _, u in rounds)
    ratios = sorted(d / u for d, u in rounds)
    return {"ms_per_update": best * 1e3, "updates_per_s": 1 / best,
            "samples_per_s": config.batch_size / best, "xla_gflop_per_update": flops / 1e9,
            "matmuls_per_update": len(dots), "matmul_gflop_per_update": matmul_flops / 1e9,
            "gflop_per_s": matmul_flops / best / 1e9, "matmul_only_ms": dots_s * 1e3,
            "fraction_of_network_matmuls": dots_s / best,
            "fraction_median_of_rounds": statistics.median(ratios),
            "fraction_min": ratios[0], "fraction_max": ratios[-1], "rounds": len(rounds),
            "round_seconds": [[d, u] for d, u in rounds]}


def main(argv):
    if len(argv) > 1:
        sys.exit(f"bench_ac_update: error: unexpected arguments: {' '.join(argv[1:])}")
    if _REPEATS.value < 1 or _UPDATES.value < 1:
        sys.exit(f"bench_ac_update: error: --repeats and --updates must be >= 1, got "
                 f"{_REPEATS.value} and {_UPDATES.value}")
    try:
        configs = {name: ac_config.Config(**recipe_config(name)) for name in _RECIPES.value}
        env_names = {name: recipe_env(name) for name in _RECIPES.value}
        for c in configs.values():
            c.validate()
    except (ValueError, OSError) as e:
        sys.exit(f"bench_ac_update: error: {e}")
    ceiling = matmul_ceiling()
    rows = []
    for name, config in configs.items():
        row = {"recipe": name, "env": env_names[name], "batch_size": config.batch_size,
               "critic_hidden": list(config.critic_sizes()), **time_updates(
                   config, env_names[name], _UPDATES.value, _REPEATS.value)}
        row["fraction_of_peak"] = row["gflop_per_s"] / ceiling
        rows.append(row)
    print(f"dense float32 matmul peak: {ceiling:.0f} GFLOP/s")
    print("| recipe | env | batch | critics | ms/update | updates/s | samples/s | matmuls | "
          "matmul GFLOP/update (XLA) | matmuls alone, ms | of its matmuls | single rounds: "
          "median [min, max] (rounds) | GFLOP/s | of peak |"
          "\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['recipe']} | {r['env']} | {r['batch_size']} | {r['critic_hidden']} | "
              f"{r['ms_per_update']:.2f} | {r['updates_per_s']:.0f} | {r['samples_per_s']:,.0f} "
              f"| {r['matmuls_per_update']} | {r['matmul_gflop_per_update']:.3f} "
              f"({r['xla_gflop_per_update']:.3f}) | {r['matmul_only_ms']:.2f} | "
              f"**{r['fraction_of_network_matmuls']:.2f}** | "
              f"{r['fraction_median_of_rounds']:.2f} [{r['fraction_min']:.2f}, "
              f"{r['fraction_max']:.2f}] ({r['rounds']}) | "
              f"{r['gflop_per_s']:.0f} | "
              f"{r['fraction_of_peak']:.0%} |")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump({"matmul_peak_gflop_per_s": ceiling, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
