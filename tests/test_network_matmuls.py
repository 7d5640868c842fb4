"""experiments/network_matmuls.py: the matmuls a function executes, weighted by how
often one call runs them, and a program that runs only those."""
import fractions
import math
import re

import jax
import jax.numpy as jnp
import pytest

from experiments import network_matmuls
from experiments.ac_recipes import recipe_env

B, I, H = 8, 5, 6


def _fn(x, w1, w2, flag):
    """One matmul outside control flow, one in a cond branch, one in a 3-step scan,
    and the gradient of a matmul (two more: d/dw and d/dx)."""
    y = x @ w1                                                     # [B, H]
    z = jax.lax.cond(flag, lambda: y @ w2, lambda: jnp.zeros((B, H)))
    s, _ = jax.lax.scan(lambda c, _: (c @ w2, None), z, None, length=3)
    g = jax.grad(lambda w, x: jnp.sum(x @ w), argnums=(0, 1))(w1, x)
    return s, g


def test_weights_follow_control_flow_and_flops_are_exact():
    args = (jnp.ones((B, I)), jnp.ones((I, H)), jnp.ones((H, H)), True)
    dots = network_matmuls.collect(_fn, *args, cond_weight=fractions.Fraction(1, 2))
    weights = sorted(d.weight for d in dots)
    # forward + grad (the grad of x @ w is two transposed dots; the forward pass inside
    # jax.grad is one more): 1 x 4, the cond branch 1/2, the scan body 3.
    assert weights == [fractions.Fraction(1, 2)] + [1] * 4 + [3]
    expected = (4 * 2 * B * I * H) + fractions.Fraction(1, 2) * 2 * B * H * H \
        + 3 * 2 * B * H * H
    assert network_matmuls.total_flops(dots) == pytest.approx(float(expected))


def test_batched_dot_flops_count_the_batch_once():
    dots = network_matmuls.collect(
        jax.vmap(lambda a, b: a @ b), jnp.ones((2, B, I)), jnp.ones((2, I, H)))
    assert len(dots) == 1
    assert dots[0].flops() == 2 * 2 * B * I * H


def test_the_timed_program_keeps_every_matmul_at_full_size():
    """XLA must neither drop, hoist, merge nor narrow a product (an unused product or a
    passthrough barrier compiles to an empty loop)."""
    dots = network_matmuls.collect(_fn, jnp.ones((B, I)), jnp.ones((I, H)),
                                   jnp.ones((H, H)), True, cond_weight=fractions.Fraction(1, 2))
    run, args, calls = network_matmuls.dots_program(dots, n=3)
    assert calls == 3 * 2  # 3 scan steps, each two calls' worth (the cond's 1/2)
    hlo = run.lower(args).compile().as_text()
    body = hlo[:hlo.index("ENTRY")]
    products = re.findall(r"= f32\[([\d,]*)\][^ ]* dot\(", body)
    want = sorted(",".join(map(str, jax.eval_shape(network_matmuls._product(d),
                                                   jnp.ones(d.lhs), jnp.ones(d.rhs)).shape))
                  for d in dots for _ in range(int(d.weight * 2)))
    assert sorted(products) == want


def test_dots_timer_runs_the_matmuls_and_refuses_what_it_cannot_weight():
    dots = network_matmuls.collect(_fn, jnp.ones((B, I)), jnp.ones((I, H)),
                                   jnp.ones((H, H)), True, cond_weight=fractions.Fraction(1, 2))
    run_once, calls = network_matmuls.dots_timer(dots, n=2)
    seconds = run_once() / calls
    assert math.isfinite(seconds) and seconds > 0
    with pytest.raises(ValueError, match="no matmul"):
        network_matmuls.dots_timer([], n=2)
    loop = lambda x: jax.lax.while_loop(lambda c: c[0, 0] < 3, lambda c: c @ c, x)
    with pytest.raises(ValueError, match="while_loop"):
        network_matmuls.collect(loop, jnp.ones((2, 2)))


def test_paired_rounds_alternate_the_order_and_pair_each_rounds_times():
    calls = []
    first = lambda r: calls.append(("a", r)) or 10.0 + r
    second = lambda r: calls.append(("b", r)) or 20.0 + r
    rounds = network_matmuls.paired_rounds(first, second, 3)
    assert rounds == [(10.0, 20.0), (11.0, 21.0), (12.0, 22.0)]
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        network_matmuls.paired_rounds(first, second, 0)


def test_recipe_env_reads_the_presets_task():
    assert recipe_env("td3") == "Ant-v5"
    assert recipe_env("experiments/configs/suite/hopper_ac_cpu.flags") == "Hopper-v5"
