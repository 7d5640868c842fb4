"""Gymnasium's own tasks (native MuJoCo, float64) as the reference for parity.

* :func:`episodes`: gymnasium run with random actions (a share of them outside the
  action bounds) over several episodes; a backend started at each of gymnasium's
  reset states (``env.reset_to``) and given the same actions must reproduce every
  observation, reward, reward term, ``terminated`` and ``truncated``.
* :func:`collect` + :func:`one_step_errors`: states gymnasium itself visits, and the
  one-step transition from each; a backend stepped once from the same state and
  action is compared entry by entry (MJX: statistically, on the distribution).
"""
from __future__ import annotations

import numpy as np

# Ant-v5's observation blocks (default keywords), for per-block errors.
ANT_OBS_GROUPS = {"qpos": slice(0, 13), "qvel": slice(13, 27), "cfrc": slice(27, None)}


def ant_lift(qpos, qvel, rng):
    """A ``collect`` perturbation for Ant-v5: one state in ten has the torso lifted near
    the top of healthy_z_range and thrown up, so about half of those steps end
    unhealthy (z > 1)."""
    if rng.uniform() < 0.1:
        qpos, qvel = qpos.copy(), qvel.copy()
        qpos[2], qvel[2] = 0.95, rng.uniform(0.0, 3.0)
    return qpos, qvel



def _gym(name: str, **kwargs):
    import gymnasium as gym

    return gym.make(name, **kwargs)


def _info_arrays(info: dict, keys) -> dict:
    return {k: np.asarray(info[k], np.float64) for k in keys if k in info}


def episodes(name: str, steps: int, seed: int = 0, out_of_bounds: float = 0.25,
             reset_every: int = 100, **kwargs) -> dict:
    """Run gymnasium ``name`` for ``steps`` steps with uniform random actions (a
    fraction ``out_of_bounds`` of them drawn from 1.5x the bounds), resetting (new
    seed) after every episode end and at least every ``reset_every`` steps.

    -> {"resets": [(step index, qpos, qvel)], "action" [T, nu] float32 values,
    "obs" [T, obs], "reward" [T], "terminated" [T], "truncated" [T], "info":
    {key: [T, ...]}} (float64), for each step t the result of the action t.
    """
    env = _gym(name, **kwargs)
    core = env.unwrapped
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    out = {"resets": [], "action": [], "obs": [], "reward": [], "terminated": [],
           "truncated": [], "info": {}}
    env.reset(seed=seed)
    out["resets"].append((0, core.data.qpos.copy(), core.data.qvel.copy()))
    for t in range(steps):
        scale = 1.5 if rng.uniform() < out_of_bounds else 1.0
        action = rng.uniform(low * scale, high * scale).astype(np.float32)
        obs, reward, term, trunc, info = env.step(action.astype(np.float64))
        out["action"].append(action)
        out["obs"].append(obs)
        out["reward"].append(reward)
        out["terminated"].append(term)
        out["truncated"].append(trunc)
        for k, v in info.items():
            out["info"].setdefault(k, []).append(np.asarray(v, np.float64))
        since = t + 1 - out["resets"][-1][0]
        if (term or trunc or since >= reset_every) and t + 1 < steps:
            env.reset(seed=int(rng.integers(2 ** 31)))
            out["resets"].append((t + 1, core.data.qpos.copy(), core.data.qvel.copy()))
    env.close()
    out["info"] = {k: np.asarray(v) for k, v in out["info"].items()}
    for k in ("action", "obs", "reward", "terminated", "truncated"):
        out[k] = np.asarray(out[k])
    return out


def replay_episodes(env, ref: dict) -> dict:
    """Drive ``env`` (num_envs=1, auto_reset=False, native backend) through the
    reference: reset_to each of gymnasium's reset states, the same actions.
    -> the same arrays as :func:`episodes` (float64), from ``env``."""
    import jax
    import jax.numpy as jnp

    resets = {t: (q, v) for t, q, v in ref["resets"]}
    step = jax.jit(env.step)
    out = {"obs": [], "reward": [], "terminated": [], "truncated": [], "info": {}}
    state = None
    for t, action in enumerate(ref["action"]):
        if t in resets:
            q, v = resets[t]
            state = env.reset_to(q[None], v[None])
        state = step(state, jnp.asarray(action[None], jnp.float32))
        out["obs"].append(np.asarray(state.obs[0], np.float64))
        out["reward"].append(float(state.reward[0]))
        out["terminated"].append(bool(state.info["terminated"][0] > 0))
        out["truncated"].append(bool(state.info["truncated"][0] > 0))
        for k in ref["info"]:
            if k in state.info:
                out["info"].setdefault(k, []).append(np.asarray(state.info[k][0], np.float64))
    out["info"] = {k: np.asarray(v) for k, v in out["info"].items()}
    for k in ("obs", "reward", "terminated", "truncated"):
        out[k] = np.asarray(out[k])
    return out


def collect(name: str, num_states: int, seed: int = 0, stride: int = 3,
            max_episode_len: int = 150, perturb=None, **kwargs) -> dict[str, np.ndarray]:
    """Run gymnasium ``name`` with uniform random actions within the bounds; every
    ``stride``-th step becomes a reference transition. ``perturb(qpos, qvel, rng)``
    may move a state before it is used (e.g. to reach unhealthy states).

    Returns float64 arrays: qpos [S,nq], qvel [S,nv], action [S,nu] (float32 values),
    obs [S,obs], reward [S], terminated [S] bool, and each numeric info key [S, ...].
    """
    env = _gym(name, **kwargs)
    core = env.unwrapped
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    low, high = env.action_space.low, env.action_space.high
    out: dict[str, list] = {k: [] for k in ("qpos", "qvel", "action", "obs", "reward",
                                            "terminated")}
    t = 0
    while len(out["qpos"]) < num_states:
        action = rng.uniform(low, high).astype(np.float32).astype(np.float64)
        t += 1
        if t % stride == 0:
            qpos, qvel = core.data.qpos.copy(), core.data.qvel.copy()
            if perturb is not None:
                qpos, qvel = perturb(qpos, qvel, rng)
            core.set_state(qpos, qvel)
            obs, reward, term, _, info = core.step(action)
            rec = dict(qpos=qpos, qvel=qvel, action=action, obs=obs, reward=reward,
                       terminated=term, **_info_arrays(info, info))
            for k, v in rec.items():
                out.setdefault(k, []).append(v)
        else:
            _, _, term, _, _ = core.step(action)
        if term or t >= max_episode_len:
            env.reset(seed=int(rng.integers(2 ** 31)))
            t = 0
    env.close()
    return {k: np.asarray(v) for k, v in out.items()}


def one_step_errors(env, ref: dict[str, np.ndarray], obs_groups: dict | None = None
                    ) -> dict[str, np.ndarray]:
    """Step ``env`` (auto_reset=False) from every reference state with the reference
    action -> per-state absolute errors: ``obs_<group>`` (max over the group's
    observation entries; ``obs_groups`` {group: slice}, default one group "obs"),
    reward and each info term gymnasium reports, and terminated_mismatch (0/1)."""
    import jax.numpy as jnp

    n, s = env.num_envs, len(ref["qpos"])
    groups = obs_groups or {"obs": slice(None)}
    chunks: dict[str, list] = {}
    terms = [k for k in ref if k not in ("qpos", "qvel", "action", "obs", "reward",
                                         "terminated")]
    for start in range(0, s, n):
        idx = np.arange(start, start + n) % s  # wrap the last chunk
        state = env.reset_to(ref["qpos"][idx], ref["qvel"][idx])
        state = env.step(state, jnp.asarray(ref["action"][idx], jnp.float32))
        d_obs = np.abs(np.asarray(state.obs, np.float64) - ref["obs"][idx])
        errs = {f"obs_{g}": d_obs[:, sl].max(1) if d_obs[:, sl].size else np.zeros(n)
                for g, sl in groups.items()}
        errs["reward"] = np.abs(np.asarray(state.reward, np.float64) - ref["reward"][idx])
        errs["terminated_mismatch"] = ((np.asarray(state.info["terminated"]) > 0)
                                       != ref["terminated"][idx])
        for k in terms:
            if k in state.info:
                d = np.abs(np.asarray(state.info[k], np.float64) - ref[k][idx])
                errs[k] = d.reshape(n, -1).max(1)
        for k, v in errs.items():
            chunks.setdefault(k, []).append(v)
    return {k: np.concatenate(v)[:s].astype(np.float64) for k, v in chunks.items()}
