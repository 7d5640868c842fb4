"""Both agents train on every task of the suite: observation and action sizes from the
env, actions mapped onto the task's bounds, a few compiled iterations with finite
metrics. PPO and the actor-critic alternate over the tasks (each task's compile is the
cost here); the launcher, checkpoints and evaluation are covered on Ant-v5, PointMass
and the user's task elsewhere."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_lite.agents import actor_critic, ppo
from jaxrl_lite.blocks.policy import ScaledActions
from jaxrl_lite.envs.tasks import SUITE
from jaxrl_lite.run import setup
from jaxrl_lite.run.run_config import TrainConfig

SMALL = {
    "ppo": ppo.Config(num_envs=4, unroll_length=8, num_minibatches=2, num_epochs=1,
                      total_steps=10_000, policy_hidden=(8, 8), value_hidden=(8, 8)),
    "ac": actor_critic.Config(num_envs=4, steps_per_iteration=8, total_steps=10_000,
                              buffer_size=256, batch_size=16, hidden=(8, 8), warmup_steps=16,
                              updates_per_step=1),
}
CASES = [(spec.name, "ppo" if i % 2 == 0 else "ac") for i, spec in enumerate(SUITE)]


@pytest.mark.parametrize("name, algo", CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_trains_a_few_iterations(name, algo, tmp_path):
    config = setup.prepare(TrainConfig(out_dir=str(tmp_path / "run"), algo=algo, env=name,
                                       backend="mujoco", eval_envs=1,
                                       agent_config=SMALL[algo])).config
    run = setup.build(config)
    env = run.env
    bounded = not np.all(env.action_high == 1.0)
    assert isinstance(env, ScaledActions) == bounded
    state = run.parallel.init(lambda: run.agent.init(run.agent_config, env, run.init_key))
    assert state.env_state.obs.shape == (4, env.observation_size)
    step = run.agent.make_train_iteration(run.agent_config, env)
    for _ in range(3):
        state, metrics = step(state)
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    spec, actor, norm = run.agent.policy_parts(run.agent_config, state)
    assert (spec.obs_dim, spec.act_dim) == (env.observation_size, env.action_size)
    if algo == "ac":
        assert float(metrics["critic_updates"]) > 0
        # Replayed actions are the agent's, in [-1, 1], whatever the task's units.
        assert float(jnp.max(jnp.abs(state.buffer.data.action))) <= 1.0
