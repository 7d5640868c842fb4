"""A user's own task, outside the package: a block on a rail pushed by one motor,
rewarded for its x-velocity minus a control cost (``--env=tests.user_task:Slider-v0``).

One module, one registration: the gymnasium env (what the exporter and the Pi harness
run) and the jaxrl_lite TaskSpec (what trains, on either backend), registered with
both when the module is imported. On a Pi (no JAX) only the gymnasium half loads.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np
from gymnasium.envs.mujoco import MujocoEnv
from gymnasium.spaces import Box

NAME = "Slider-v0"
XML = """
<mujoco model="slider">
  <option timestep="0.02"/>
  <worldbody>
    <geom type="plane" size="5 5 0.1"/>
    <body name="block" pos="0 0 0.1">
      <joint name="x" type="slide" axis="1 0 0" damping="0.5"/>
      <geom type="box" size="0.1 0.1 0.1" mass="1" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" gear="5" ctrlrange="-2 2" ctrllimited="true"/>
  </actuator>
</mujoco>
"""
FRAME_SKIP, CTRL_COST = 2, 0.1


def xml_path() -> str:
    """The model written once to a file (MuJoCo loads models from paths here)."""
    path = os.path.join(tempfile.gettempdir(), f"jaxrl_lite_user_slider_{os.getuid()}.xml")
    if not os.path.exists(path) or open(path).read() != XML:
        with open(path + ".tmp", "w") as f:
            f.write(XML)
        os.replace(path + ".tmp", path)
    return path


class SliderEnv(MujocoEnv):
    """The gymnasium side: obs = (qpos, qvel); reward = x-velocity - 0.1 |action|^2."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 25}

    def __init__(self, **kwargs):
        MujocoEnv.__init__(self, xml_path(), FRAME_SKIP, observation_space=Box(
            -np.inf, np.inf, (2,), np.float64), **kwargs)

    def step(self, action):
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        velocity = (self.data.qpos[0] - x_before) / self.dt
        ctrl = CTRL_COST * np.sum(np.square(action))
        obs = np.concatenate([self.data.qpos, self.data.qvel])
        return obs, velocity - ctrl, False, False, {"x_velocity": velocity,
                                                      "reward_forward": velocity,
                                                      "reward_ctrl": -ctrl}

    def reset_model(self):
        qpos = self.init_qpos + self.np_random.uniform(-0.05, 0.05, self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-0.05, 0.05, self.model.nv)
        self.set_state(qpos, qvel)
        return np.concatenate([self.data.qpos, self.data.qvel])


try:  # the training side: JAX and jaxrl_lite
    import jax.numpy as jnp

    from jaxrl_lite import envs
    from jaxrl_lite.envs import task
except ImportError:  # a Pi: gymnasium (and LiteRT) only
    envs = None

if envs is not None:
    @dataclasses.dataclass(frozen=True)
    class Config(task.TaskConfig):
        TASK = NAME
        xml_file: str = dataclasses.field(default_factory=xml_path)
        frame_skip: int = FRAME_SKIP
        max_episode_steps: int = 100

    def _bind(model, config) -> task.Semantics:
        init_qpos, init_qvel = model.qpos0.astype(np.float32), np.zeros(1, np.float32)
        step_dt = float(model.opt.timestep) * config.frame_skip

        def reset(key):
            return task.noisy_state(key, init_qpos, init_qvel, 0.05)

        def observation(qpos, qvel, fields):
            return jnp.concatenate([qpos, qvel])

        def transition(qpos, qvel, fields, dpos, action):
            velocity = dpos[0] / step_dt
            ctrl = task.control_cost(CTRL_COST, action)
            return velocity - ctrl, jnp.zeros((), bool), {
                "x_velocity": velocity, "reward_forward": velocity, "reward_ctrl": -ctrl}

        return task.Semantics(reset, observation, transition, lambda q, v, f: {})

    TASK = task.TaskSpec(NAME, Config, fields=(), reset_fields=(),
                         position=lambda model, config: task.Position("qpos", 1),
                         bind=_bind)
    envs.register(TASK, gym_entry_point=f"{__name__}:SliderEnv")
else:
    import gymnasium as gym

    if NAME not in gym.registry:
        gym.register(id=NAME, entry_point=f"{__name__}:SliderEnv", max_episode_steps=100)
