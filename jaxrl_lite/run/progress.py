"""A rich progress display for long runs: env steps, steps/s, return, ETA.

Updated once per log interval (the host only sees metrics then). Disabled
(a no-op) with ``enabled=False`` or when stderr is not a terminal, so logs
and CI output stay clean; absl logging carries the same figures.
"""
from __future__ import annotations

import sys

from rich.progress import (BarColumn, Progress as RichProgress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)


def _eng(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.0f}"


class Progress:
    def __init__(self, total_steps: int, start_step: int = 0, enabled: bool = True,
                 description: str = "training"):
        self._progress = None
        if not (enabled and sys.stderr.isatty()):
            return
        self._progress = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
            TaskProgressColumn(), TextColumn("{task.fields[steps]} steps"),
            TextColumn("{task.fields[rate]}/s"), TextColumn("return {task.fields[ret]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            transient=False)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total_steps,
                                             completed=start_step, rate="-", ret="-",
                                             steps=_eng(start_step))

    def update(self, step: int, steps_per_s: float, episode_return) -> None:
        if self._progress is None:
            return
        ret = "-" if episode_return is None else f"{episode_return:.1f}"
        self._progress.update(self._task, completed=step, rate=_eng(steps_per_s), ret=ret,
                              steps=_eng(step))

    @property
    def active(self) -> bool:
        return self._progress is not None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
