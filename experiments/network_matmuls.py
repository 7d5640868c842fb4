"""The dense matmuls a jitted function executes, and how fast this CPU runs them alone.

``collect(fn, *args, cond_weight=w)`` traces ``fn`` to a jaxpr and lists every
``dot_general`` it contains (forward and backward passes alike: ``jax.grad`` has
already been expanded into dots), with their operand shapes, dimension numbers and
how often one call executes them: 1 outside control flow, ``length`` per scan
level, and ``cond_weight`` inside a ``lax.cond`` branch (the actor-critic update's
only cond is its policy delay: the actor branch runs every ``policy_delay``-th
update, so ``w = 1 / policy_delay``). ``while_loop``s are refused (no trip count).

``time_dots(dots, n, repeats)`` builds a program that runs exactly those matmuls,
on random operands of the same shapes, in a jitted ``lax.scan`` (the same way the
update is timed) and returns the best seconds per call of ``fn``: the dense-matmul
ceiling of the function's own networks on this machine. Each matmul's left operand
is offset by a carried scalar so XLA can neither hoist it out of the loop nor merge
repeated copies; those offsets add one elementwise pass over each left operand
(under 1 % of its matmul's FLOPs for the shapes here).
"""
from __future__ import annotations

import fractions
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Dot(NamedTuple):
    lhs: tuple        # shape
    rhs: tuple        # shape
    dtype: str
    dimension_numbers: tuple
    precision: object
    preferred_element_type: object
    weight: fractions.Fraction  # executions per call of the traced function

    def flops(self) -> int:
        """2 x batch x free(lhs) x free(rhs) x contracted = 2 x |lhs| x free(rhs)."""
        (_, rc), (_, rb) = self.dimension_numbers
        free_rhs = [d for i, d in enumerate(self.rhs) if i not in rc and i not in rb]
        return 2 * math.prod(self.lhs) * math.prod(free_rhs)


def _sub_jaxprs(value):
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _walk(jaxpr, weight, cond_weight, out):
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars[:2])
            out.append(Dot(tuple(lhs.shape), tuple(rhs.shape), str(lhs.dtype),
                           eqn.params["dimension_numbers"], eqn.params.get("precision"),
                           eqn.params.get("preferred_element_type"), weight))
            continue
        if name == "while":
            raise ValueError("a while_loop's trip count is unknown: cannot weight its matmuls")
        inner = weight
        if name == "scan":
            inner = weight * eqn.params["length"]
        elif name == "cond":
            inner = weight * cond_weight
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                _walk(sub, inner, cond_weight, out)


def collect(fn, *args, cond_weight: fractions.Fraction = fractions.Fraction(1)) -> list[Dot]:
    """-> every dot_general of ``fn(*args)``, weighted by executions per call."""
    closed = jax.make_jaxpr(fn)(*args)
    out: list[Dot] = []
    _walk(closed.jaxpr, fractions.Fraction(1), fractions.Fraction(cond_weight), out)
    return out


def total_flops(dots: list[Dot]) -> float:
    """Matmul FLOPs per call of the traced function (weights applied)."""
    return float(sum(d.flops() * d.weight for d in dots))


def time_dots(dots: list[Dot], n: int, repeats: int) -> float:
    """Best seconds per call of the traced function, running only its matmuls."""
    if not dots:
        raise ValueError("the function executes no matmul")
    # One scan step runs each dot (weight x period) times, period = lcm of the
    # weights' denominators; the step then stands for `period` calls.
    period = math.lcm(*(d.weight.denominator for d in dots))
    copies = [int(d.weight * period) for d in dots]
    rng = np.random.default_rng(0)
    operands = [(jnp.asarray(rng.standard_normal(d.lhs), d.dtype),
                 jnp.asarray(rng.standard_normal(d.rhs), d.dtype)) for d in dots]

    def step(carry, _):
        acc = jnp.zeros((), jnp.float32)
        for d, (lhs, rhs), k in zip(dots, operands, copies):
            for j in range(k):
                out = jax.lax.dot_general(lhs + (carry + j), rhs, d.dimension_numbers,
                                          precision=d.precision,
                                          preferred_element_type=d.preferred_element_type)
                acc = acc + out.reshape(-1)[0].astype(jnp.float32)
        return carry + 1e-12 * acc, None

    run = jax.jit(lambda c: jax.lax.scan(step, c, None, length=n)[0])
    c0 = jnp.zeros((), jnp.float32)
    jax.block_until_ready(run(c0))
    best = float("inf")
    for r in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(run(c0 + r))
        best = min(best, (time.perf_counter() - t) / (n * period))
    return best
