"""The dense matmuls a jitted function executes, and how fast this CPU runs them alone.

``collect(fn, *args, cond_weight=w)`` traces ``fn`` to a jaxpr and lists every
``dot_general`` it contains (forward and backward passes alike: ``jax.grad`` has
already been expanded into dots), with their operand shapes, dimension numbers and
how often one call executes them: 1 outside control flow, ``length`` per scan
level, and ``cond_weight`` inside a ``lax.cond`` branch (the actor-critic update's
only cond is its policy delay: the actor branch runs every ``policy_delay``-th
update, so ``w = 1 / policy_delay``). ``while_loop``s are refused (no trip count).

``dots_timer(dots, n)`` builds and compiles a program that runs exactly those matmuls,
on random operands of the same shapes, in a jitted ``lax.scan`` of ``n`` steps (the same
way the update is timed), and returns ``(run_once, calls)``: ``run_once()`` times one scan,
so ``best / calls`` is the dense-matmul ceiling of the function's own networks on this
machine, in seconds per call of ``fn``. Every product is carried out of
the loop and one of its elements is added (times 1e-30) into one element of the next
copy's left operand, so XLA can neither drop, narrow, hoist nor merge a matmul; besides
the matmuls the program does one in-place scalar update per product. ``paired_rounds``
times it against another program in alternating pairs (``bench_ac_update``).
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


def _product(d: Dot):
    return lambda lhs, rhs: jax.lax.dot_general(
        lhs, rhs, d.dimension_numbers, precision=d.precision,
        preferred_element_type=d.preferred_element_type)


def dots_program(dots: list[Dot], n: int):
    """-> (jitted program, its argument, calls it stands for): ``n`` scan steps of the
    matmuls of ``period`` calls of the traced function."""
    if not dots:
        raise ValueError("the function executes no matmul")
    # One scan step runs each dot (weight x period) times, period = lcm of the
    # weights' denominators; the step then stands for `period` calls.
    period = math.lcm(*(d.weight.denominator for d in dots))
    copies = [int(d.weight * period) for d in dots]
    rng = np.random.default_rng(0)
    lhs0 = [jnp.asarray(rng.standard_normal(d.lhs), d.dtype) for d in dots]
    rhs = [jnp.asarray(rng.standard_normal(d.rhs), d.dtype) for d in dots]
    outs0 = [jnp.zeros(jax.eval_shape(_product(d), l, r).shape,
                       d.preferred_element_type or d.dtype)
             for d, l, r, k in zip(dots, lhs0, rhs, copies) for _ in range(k)]

    def step(carry, _):
        lhss, _ = carry
        new_lhss, outs = [], []
        for d, lhs, r, k in zip(dots, lhss, rhs, copies):
            for _ in range(k):
                out = _product(d)(lhs, r)
                outs.append(out)
                # One element of the product flows into the next copy's (and step's) left
                # operand: the product cannot be hoisted out of the loop, and the copies
                # differ, so none is merged; every product is carried out of the loop, so
                # none is dropped or narrowed. The update is one in-place element.
                corner = (0,) * lhs.ndim
                lhs = lhs.at[corner].add(1e-30 * out.reshape(-1)[0].astype(lhs.dtype))
            new_lhss.append(lhs)
        return (new_lhss, outs), None

    run = jax.jit(lambda c: jax.lax.scan(step, c, None, length=n)[0])
    return run, (lhs0, outs0), n * period


def dots_timer(dots: list[Dot], n: int):
    """A compiled matmuls-alone program: (run_once() -> wall seconds of one scan, calls)."""
    run, args, calls = dots_program(dots, n)
    jax.block_until_ready(run(args))

    def run_once() -> float:
        t = time.perf_counter()
        jax.block_until_ready(run(args))
        return time.perf_counter() - t

    return run_once, calls


def paired_rounds(first, second, repeats: int) -> list[tuple[float, float]]:
    """Time two programs in alternating pairs, `repeats` rounds: [(first_s, second_s)].

    Each round times both back to back (the order flips every round), so a change in the
    machine's speed between rounds moves both halves of a round's ratio together.
    """
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    out = []
    for r in range(repeats):
        if r % 2:
            b = second(r)
            a = first(r)
        else:
            a = first(r)
            b = second(r)
        out.append((a, b))
    return out
