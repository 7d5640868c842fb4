"""When a run logs, evaluates and checkpoints (jaxrl_lite.run.schedule; no JAX)."""
from types import SimpleNamespace

from jaxrl_lite.run.schedule import Schedule


def _schedule(eval_every_steps, total_steps=1000, steps_per_iter=100):
    config = SimpleNamespace(agent_config=SimpleNamespace(total_steps=total_steps),
                             checkpoint_every_steps=500, log_every_steps=200,
                             eval_every_steps=eval_every_steps, stop_after_steps=0)
    return Schedule.from_config(config, steps_per_iter)


def test_evaluations_every_n_only_at_the_end_or_never():
    every = _schedule(300)  # rounded up to whole iterations: every 3
    assert [it for it in range(1, 11) if every.is_eval(it)] == [3, 6, 9, 10]
    end = _schedule(0)
    assert end.evaluates and [it for it in range(1, 11) if end.is_eval(it)] == [10]
    never = _schedule(-1)
    assert not never.evaluates and not any(never.is_eval(it) for it in range(1, 11))
    # Records still come at the log and checkpoint boundaries, the last one included.
    assert [it for it in range(1, 11) if never.is_record(it)] == [2, 4, 5, 6, 8, 10]
