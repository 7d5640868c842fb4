"""The one metrics writer: ``metrics.jsonl`` + ``learning_curve.png`` (+ TensorBoard).

``metrics.jsonl`` holds one JSON object per log step with at least ``step``
(env steps), ``wall_s`` (seconds of training wall time, continued across
resumes), ``env_steps_per_s`` (including learning) and ``episode_return_mean``
(null until an episode has finished). ``learning_curve.png`` plots training
and evaluation return against env steps and against wall time; it is redrawn
during the run (throttled) and at the end. With ``tensorboard=True`` the same
scalars also go to TensorBoard event files in ``tensorboard/`` (x axis: env
steps), rebuilt from ``metrics.jsonl`` at every start so that a resumed run's
event stream has each step once.
"""
from __future__ import annotations

import json
import math
import os
import time

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_SUBDIR = "tensorboard"


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read(run_dir: str) -> list[dict]:
    """All records of ``run_dir/metrics.jsonl`` (skips a torn last line)."""
    return read_jsonl(os.path.join(run_dir, METRICS_FILE))


def read_jsonl(path: str) -> list[dict]:
    """Records of a JSON-lines file up to its first torn line; [] if it does not exist."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


class MetricsWriter:
    """Appends records and keeps the learning curve up to date."""

    def __init__(self, run_dir: str, title: str = "", plot_every_s: float = 20.0):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, METRICS_FILE)
        self.curve_path = os.path.join(run_dir, CURVE_FILE)
        self.title = title
        self.plot_every_s = plot_every_s
        self.records = read(run_dir)
        self._last_plot = 0.0
        self._tensorboard = None

    def start_tensorboard(self) -> None:
        """Mirror the records (those kept so far, then every new one) to TensorBoard."""
        self._tensorboard = TensorBoardMirror(os.path.join(self.run_dir, TENSORBOARD_SUBDIR))
        for r in self.records:
            self._tensorboard.write(r)
        self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (a resume from that checkpoint)."""
        kept = [r for r in self.records if r.get("step", 0) <= step]
        if len(kept) != len(self.records) or os.path.exists(self.path):
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                for r in kept:
                    f.write(json.dumps(r) + "\n")
            os.replace(tmp, self.path)
        self.records = kept

    def write(self, record: dict, force_plot: bool = False) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        self.records.append(record)
        if self._tensorboard is not None:
            self._tensorboard.write(record)
            self._tensorboard.flush()
        now = time.monotonic()
        if force_plot or now - self._last_plot >= self.plot_every_s:
            self.plot()
            self._last_plot = now

    def plot(self) -> None:
        plot_curve(self.records, self.curve_path, self.title)


class TensorBoardMirror:
    """Scalars of metrics records as TensorBoard event files in ``directory``,
    written by TensorFlow's own summary writer (``tf.summary.write`` with the
    scalars plugin's metadata; the ``tensorboard`` package is needed only to view
    them). Earlier event files in ``directory`` are derived data and are removed:
    the caller replays the records it keeps."""

    def __init__(self, directory: str):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        tf.config.set_visible_devices([], "GPU")  # leave the accelerator to JAX
        self._tf = tf
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name.startswith("events.out.tfevents."):
                    os.remove(os.path.join(directory, name))
        os.makedirs(directory, exist_ok=True)
        self._writer = tf.summary.create_file_writer(directory)
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def write(self, record: dict) -> None:
        step = int(record["step"])
        with self._writer.as_default():
            for key, value in record.items():
                if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                self._tf.summary.write(key, self._tf.constant(float(value), self._tf.float32),
                                       step=step, metadata=self._metadata)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def plot_curve(records: list[dict], path: str, title: str = "") -> None:
    """Return vs env steps and vs wall time (train episodes and deterministic eval)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    series = [("episode_return_mean", "train episodes", "-"),
              ("eval/return_mean", "deterministic eval", "o-")]
    for ax, xkey, xlabel in ((axes[0], "step", "env steps"),
                             (axes[1], "wall_s", "wall time (s)")):
        for key, label, style in series:
            pts = [(r[xkey], r[key]) for r in records
                   if r.get(key) is not None and r.get(xkey) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, style, label=label, markersize=3)
        ax.set_xlabel(xlabel)
        if xkey == "step":
            ax.xaxis.set_major_formatter(EngFormatter())
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
