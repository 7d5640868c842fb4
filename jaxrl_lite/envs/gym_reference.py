"""Reference transitions from gymnasium's own ``Ant-v5`` (native MuJoCo, float64).

Used by the parity tests and ``experiments/bench_env.py --solver_table``:
collect states that gymnasium itself visits under random actions, then
compare a backend's one-step result from the same state and action
(``env.reset_to`` + ``env.step``) with gymnasium's (``set_state`` + ``step``).
"""
from __future__ import annotations

import numpy as np

from jaxrl_lite.envs import ant

TERMS = ("reward_forward", "reward_ctrl", "reward_contact", "reward_survive",
         "x_velocity", "y_velocity")


def collect(num_states: int, seed: int = 0, stride: int = 3, max_episode_len: int = 150,
            unhealthy_fraction: float = 0.1, **ant_kwargs) -> dict[str, np.ndarray]:
    """Run gymnasium Ant-v5 with uniform random actions in [-1, 1]; every
    ``stride``-th step becomes a reference transition.

    A ``unhealthy_fraction`` of the states is lifted to z = 0.95 m with an
    upward velocity U(0, 3) m/s, so about half of those steps end unhealthy.
    Returns float64 arrays: qpos [S,15], qvel [S,14], action [S,8] (float32
    values), obs [S,obs], reward [S], each of TERMS [S], terminated [S] bool,
    next_qpos [S,15], next_qvel [S,14].
    """
    import gymnasium as gym

    env = gym.make("Ant-v5", **ant_kwargs).unwrapped
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = {k: [] for k in ("qpos", "qvel", "action", "obs", "reward", "terminated",
                           "next_qpos", "next_qvel") + TERMS}
    t = 0
    while len(out["qpos"]) < num_states:
        action = rng.uniform(-1.0, 1.0, ant.NU).astype(np.float32).astype(np.float64)
        t += 1
        if t % stride == 0:
            qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
            if rng.uniform() < unhealthy_fraction:
                # Lift the torso near the top of healthy_z_range and throw it
                # up: about half of these steps end unhealthy (z > 1).
                qpos[2] = 0.95
                qvel[2] = rng.uniform(0.0, 3.0)
            env.set_state(qpos, qvel)
            obs, reward, term, _, info = env.step(action)
            rec = dict(qpos=qpos, qvel=qvel, action=action, obs=obs, reward=reward,
                       terminated=term, next_qpos=env.data.qpos.copy(),
                       next_qvel=env.data.qvel.copy())
            rec.update({k: info[k] for k in TERMS})
            for k, v in rec.items():
                out[k].append(v)
        else:
            _, _, term, _, _ = env.step(action)
        if term or t >= max_episode_len:
            env.reset(seed=int(rng.integers(2 ** 31)))
            t = 0
    env.close()
    return {k: np.asarray(v) for k, v in out.items()}


def one_step_errors(env, ref: dict[str, np.ndarray], batch: int | None = None
                    ) -> dict[str, np.ndarray]:
    """Step ``env`` (auto_reset=False, num_envs = batch) from every reference
    state with the reference action; -> per-state absolute errors:
    obs_qpos / obs_qvel (= max |Δ next qvel|) / obs_cfrc (max over entries),
    reward and each of TERMS, and terminated_mismatch (0/1)."""
    import jax.numpy as jnp

    n = env.num_envs
    s = len(ref["qpos"])
    nobs_q = ant.NQ - (2 if env.config.exclude_current_positions_from_observation else 0)
    chunks = {}
    for start in range(0, s, n):
        idx = np.arange(start, start + n) % s  # wrap the last chunk
        state = env.reset_to(ref["qpos"][idx], ref["qvel"][idx])
        state = env.step(state, jnp.asarray(ref["action"][idx], jnp.float32))
        obs = np.asarray(state.obs, np.float64)
        d_obs = np.abs(obs - ref["obs"][idx])
        errs = {
            "obs_qpos": d_obs[:, :nobs_q].max(1),
            "obs_qvel": d_obs[:, nobs_q:nobs_q + ant.NV].max(1),
            "obs_cfrc": (d_obs[:, nobs_q + ant.NV:].max(1) if obs.shape[1] > nobs_q + ant.NV
                         else np.zeros(n)),
            "reward": np.abs(np.asarray(state.reward, np.float64) - ref["reward"][idx]),
            "terminated_mismatch": (np.asarray(state.info["terminated"]) > 0)
            != ref["terminated"][idx],
        }
        for k in TERMS:
            errs[k] = np.abs(np.asarray(state.info[k], np.float64) - ref[k][idx])
        for k, v in errs.items():
            chunks.setdefault(k, []).append(v)
    return {k: np.concatenate(v)[:s].astype(np.float64) for k, v in chunks.items()}
