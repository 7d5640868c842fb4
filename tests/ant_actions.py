"""Shared by both Ant backends' tests: one action applied from one gymnasium state,
in gymnasium and in our env, for the out-of-range / NaN action checks."""
import gymnasium as gym
import jax.numpy as jnp
import numpy as np

# Out of range, huge and infinite entries next to ordinary ones.
BIG = np.array([5, -5, 1e11, -np.inf, np.inf, 0.3, -0.3, 2], np.float32)


def one_nan() -> np.ndarray:
    a = np.full(8, 0.5, np.float32)
    a[3] = np.nan
    return a


def steppers(env, seed: int = 5):
    """-> (gym_step, our_step): ``gym_step(a) -> (obs, reward)`` from the state
    gymnasium's reset(seed) gives; ``our_step(a) -> (obs[0], reward[0], State)``
    from the same state in every env of ``env``'s batch."""
    g = gym.make("Ant-v5").unwrapped
    g.reset(seed=seed)
    qpos, qvel = g.data.qpos.copy(), g.data.qvel.copy()
    n = env.num_envs

    def gym_step(a):
        g.set_state(qpos, qvel)
        with np.errstate(over="ignore", invalid="ignore"):
            obs, r, *_ = g.step(np.asarray(a, np.float64))
        return obs, r

    def our_step(a):
        st = env.reset_to(np.stack([qpos] * n), np.stack([qvel] * n))
        st = env.step(st, jnp.asarray(np.stack([a] * n), jnp.float32))
        return np.asarray(st.obs[0]), float(st.reward[0]), st

    return gym_step, our_step
