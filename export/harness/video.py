"""Record one Ant-v5 episode driven by an exported model, with MuJoCo's offscreen renderer.

  python -m export.harness.video --model=EXPORT/actor_int8.tflite --video=ant.mp4

Runs in its own process (``export.evaluate --video`` starts it after the
measurements) so the GL context never adds to a variant's memory figures.
Headless GL: MUJOCO_GL=egl (Debian: libegl1 + libegl-mesa0, the default
here) or MUJOCO_GL=osmesa (Debian: libosmesa6). MP4 needs ffmpeg (Debian:
ffmpeg, or pip imageio-ffmpeg); GIF needs Pillow.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
from absl import flags

from export.harness import errors, profiles
from export.harness.errors import HarnessError
from export.harness import runtime
from export.harness.loop import make_env
from export.harness.manifest import arena_bytes, entry_for

profiles.define_common_flags()
profiles.define_model_flags()
_MODEL, _RUNTIME = flags.FLAGS["model"], flags.FLAGS["runtime"]
_MANIFEST, _VIDEO = flags.FLAGS["manifest"], flags.FLAGS["video"]
_SEED, _STEPS = flags.FLAGS["seed"], flags.FLAGS["max_episode_steps"]
_PROBE = flags.DEFINE_bool("probe_gl", False, "Only check that offscreen rendering works.")
_WIDTH = flags.DEFINE_integer("width", 480, "Frame width, pixels.")
_HEIGHT = flags.DEFINE_integer("height", 480, "Frame height, pixels.")

GL_HELP = ("install a headless GL backend: EGL (Debian: libegl1 libegl-mesa0, MUJOCO_GL=egl) "
           "or OSMesa (Debian: libosmesa6, MUJOCO_GL=osmesa)")


def _policy():
    data = runtime.read_model_bytes(_MODEL.value)
    if _RUNTIME.value == "tflm":
        _, entry = entry_for(_MODEL.value, _MANIFEST.value)
        entry = entry or {}
        return runtime.TFLMPolicy(data, runtime.micro_quantization(entry),
                                          arena_bytes(entry), _MODEL.value)
    return runtime.LiteRTPolicy(data, 1, _MODEL.value)


def _render_env(width: int, height: int):
    """(env, first obs, first frame); one-line HarnessError without a GL backend."""
    try:
        env_id, env_kwargs = profiles.task(flags.FLAGS, None)
        env = make_env(_STEPS.value, render_mode="rgb_array", env_id=env_id,
                       env_kwargs=env_kwargs)
        env.unwrapped.width, env.unwrapped.height = width, height
        obs, _ = env.reset(seed=_SEED.value)
        return env, obs, env.render()
    except Exception as e:  # noqa: BLE001 (GL failures come as many types)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise HarnessError(f"no OpenGL backend for offscreen rendering "
                           f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {first}); {GL_HELP}") \
            from None


def render_episode() -> tuple[list, float]:
    """Frames (uint8 [H, W, 3]) of one episode, and its return."""
    env, obs, frame = _render_env(_WIDTH.value, _HEIGHT.value)
    frames = [frame]
    policy = _policy()
    buf = np.zeros((1, obs.shape[0]), np.float32)
    ret, done = 0.0, False
    while not done:
        buf[0] = obs
        policy.set_input(buf)
        policy.invoke()
        obs, r, term, trunc, _ = env.step(policy.get_output()[0])
        ret += float(r)
        done = term or trunc
        frames.append(env.render())
    env.close()
    return frames, ret


def write_video(frames: list, path: str, fps: int) -> None:
    if path.endswith(".gif"):
        from PIL import Image
        imgs = [Image.fromarray(f) for f in frames]
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps),
                     loop=0)
        return
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        try:
            import imageio_ffmpeg
            ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        except ImportError:
            raise HarnessError(f"--video={path}: writing MP4 needs ffmpeg (apt install ffmpeg, "
                               f"or pip install imageio-ffmpeg); or use --video=FILE.gif") \
                from None
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-pix_fmt", "yuv420p",
           "-vcodec", "libx264", path]
    proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames),
                          capture_output=True)
    if proc.returncode != 0:
        raise HarnessError(f"ffmpeg failed writing {path}: "
                           f"{proc.stderr.decode(errors='replace').strip()[:200]}")


def _main() -> int:
    if _PROBE.value:
        _render_env(32, 32)[0].close()
        return 0
    if not _MODEL.value or not _VIDEO.value:
        raise HarnessError("give --model=PATH and --video=FILE.mp4|FILE.gif")
    frames, ret = render_episode()
    write_video(frames, _VIDEO.value, fps=20)  # Ant-v5 dt = 0.05 s: real time
    print(f"video: {_VIDEO.value} ({len(frames)} frames, return {ret:.1f})")
    return 0


if __name__ == "__main__":
    errors.run_child_cli(_main, MUJOCO_GL="egl")
