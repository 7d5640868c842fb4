"""Stable-Baselines3 PPO / TD3 / SAC with rl-baselines3-zoo's HalfCheetah hyperparameters,
trained for a wall budget and evaluated exactly as ``evaluation.gymnasium_evaluate``
evaluates ours. Needs the ``peers`` extra (stable-baselines3, torch CPU).

Hyperparameters: DLR-RM/rl-baselines3-zoo@22e3ff2 hyperparams/{ppo,td3,sac}.yml, the
``HalfCheetah-v4`` blocks (the zoo has no v5 block; v4 and v5 share the model).
PPO's block is tuned (VecNormalize on observations and rewards with the PPO gamma);
TD3 and SAC use the zoo's ``mujoco-defaults``. Other tasks get the same settings (the
peer table is about HalfCheetah; tests run a cheap task).

Evaluation: ``episodes`` episodes of ``gymnasium.make(env_id)``, seeded ``seed + i``,
deterministic action (``model.predict(..., deterministic=True)``; PPO's observations go
through the VecNormalize statistics frozen at the end of training), falls = episodes
that terminated before the TimeLimit: the loop of ``gymnasium_evaluate``.
"""
from __future__ import annotations

import time

import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecNormalize

from jaxrl_lite.run import evaluation

ZOO_SOURCE = ("DLR-RM/rl-baselines3-zoo@22e3ff2450fd92033f7f032915e1f64894a09584 "
              "hyperparams/{algo}.yml, HalfCheetah-v4")

# The zoo's HalfCheetah-v4 blocks, as keyword arguments of the SB3 constructors.
ZOO_HALFCHEETAH = {
    "ppo": {"n_steps": 512, "batch_size": 64, "gamma": 0.98, "learning_rate": 2.0633e-05,
            "ent_coef": 0.000401762, "clip_range": 0.1, "n_epochs": 20, "gae_lambda": 0.92,
            "max_grad_norm": 0.8, "vf_coef": 0.58096,
            "policy_kwargs": {"log_std_init": -2, "ortho_init": False,
                              "activation_fn": torch.nn.ReLU,
                              "net_arch": {"pi": [256, 256], "vf": [256, 256]}}},
    "td3": {"learning_starts": 10000, "train_freq": 1, "gradient_steps": 1,
            "learning_rate": 1e-3, "batch_size": 256, "policy_kwargs": {"net_arch": [400, 300]}},
    "sac": {"learning_starts": 10000},
}
ZOO_NOTES = {"ppo": "tuned block: normalize (VecNormalize, gamma 0.98), n_envs 1",
             "td3": "mujoco-defaults: normal action noise std 0.1",
             "sac": "mujoco-defaults (SB3 SAC defaults otherwise)"}
ALGOS = {"ppo": PPO, "td3": TD3, "sac": SAC}
VERSIONS = {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__}


class WallBudget(BaseCallback):
    """Stops ``learn`` at the first env step past ``budget_s`` seconds of training and
    records (wall s, env step, return) of every finished training episode."""

    def __init__(self, budget_s: float):
        super().__init__()
        self.budget_s, self.curve, self.t0 = budget_s, [], None

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()

    def wall_s(self) -> float:
        return time.perf_counter() - self.t0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:  # Monitor's summary of a finished episode (raw reward)
                self.curve.append([self.wall_s(), int(self.num_timesteps), None,
                                   float(info["episode"]["r"])])
        return self.wall_s() < self.budget_s


def make_model(algo: str, env_id: str, seed: int):
    """-> (model, VecNormalize or None) with the zoo's HalfCheetah hyperparameters."""
    kwargs = dict(ZOO_HALFCHEETAH[algo])
    venv = make_vec_env(env_id, n_envs=1, seed=seed)
    norm = None
    if algo == "ppo":
        norm = venv = VecNormalize(venv, gamma=kwargs["gamma"])
    if algo == "td3":
        n = venv.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(n), 0.1 * np.ones(n))
    return ALGOS[algo]("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **kwargs), norm


def evaluate(model, norm, env_id: str, episodes: int, seed: int) -> dict:
    """The deterministic policy in gymnasium's own env, through the same episode loop
    as jaxrl_lite's own figures (``evaluation.gymnasium_episodes``)."""
    def act(obs):
        x = norm.normalize_obs(obs) if norm is not None else obs
        return model.predict(np.asarray(x, np.float32), deterministic=True)[0]
    return evaluation.gymnasium_episodes(act, env_id, episodes, seed)


def train_and_evaluate(algo: str, env_id: str, seed: int, budget_s: float, episodes: int,
                       gym_seed: int, threads: int = 1) -> dict:
    """Train SB3 ``algo`` for ``budget_s`` seconds with ``threads`` torch threads (0: torch's
    default), evaluate; -> a peer entry (dict)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, norm = make_model(algo, env_id, seed)
    budget = WallBudget(budget_s)
    model.learn(total_timesteps=10**9, callback=budget)
    wall = budget.wall_s()
    if norm is not None:
        norm.training = False
    gym_result = evaluate(model, norm, env_id, episodes, gym_seed)
    return {"side": "sb3", "agent": algo, "task": env_id, "seed": seed, "budget_s": budget_s,
            "env_steps": int(model.num_timesteps), "train_wall_s": wall,
            "env_steps_per_s": model.num_timesteps / max(wall, 1e-9),
            "hyperparameters": ZOO_SOURCE.format(algo=algo) + f" ({ZOO_NOTES[algo]})",
            "versions": VERSIONS, "torch_threads": torch.get_num_threads(),
            "curve": budget.curve, "gym_seeds": gym_result.pop("seeds"), **gym_result}
