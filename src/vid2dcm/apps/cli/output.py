"""Where the command line writes: results on stdout (lines, or one JSON object per result with
--json), everything else on stderr (warnings, progress, the one error line). --quiet keeps stderr
to errors only."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

PROGRESS_ENV = "VID2DCM_PROGRESS_SECONDS"
"""Seconds between plain progress lines when stderr is not a terminal (default 5)."""


@dataclass
class Ui:
    """How this run reports; set once from the command's own --json/--quiet/-v options."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False


UI = Ui()


def line(text: str) -> None:
    """One result line on stdout (suppressed under --json: the JSON object says it all)."""
    if not UI.json:
        out.print(text, markup=False, highlight=False, soft_wrap=True)


def styled(text: str) -> None:
    """A result line with rich markup (verdict colours) on stdout."""
    if not UI.json:
        out.print(text, highlight=False, soft_wrap=True)


def note(text: str) -> None:
    """Information for the person at the terminal (stderr, hidden by --quiet)."""
    if not UI.quiet:
        err.print(f"vid2dcm: {text}", markup=False, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    if not UI.quiet:
        err.print(f"vid2dcm: warning: {text}", markup=False, highlight=False, soft_wrap=True)


def problem(text: str) -> None:
    """A failure that does not end the command (one file of several): always shown."""
    err.print(f"vid2dcm: error: {text}", markup=False, highlight=False, soft_wrap=True)


def emit(model: BaseModel | list[Any]) -> None:
    """One JSON document on one line of stdout."""
    if isinstance(model, BaseModel):
        text = model.model_dump_json()
    else:
        from pydantic import TypeAdapter

        text = TypeAdapter(list[Any]).dump_json(model).decode()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _seconds(value: float) -> str:
    value = max(0, round(value))
    if value < 60:
        return f"{value} s"
    minutes, secs = divmod(value, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressReport:
    """The pipeline's progress callback (stage, fraction of it done or None).

    Nothing for the first second (most conversions are done by then). Then, on a terminal, a
    bar with the percentage and the time left; otherwise (a log, a pipe) one plain line every
    few seconds, so a long transcode under a service manager still shows it is alive. Time
    left is extrapolated from the current stage's rate, once 2 % of it is done."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 first_after_s: float = 1.0, every_s: float | None = None) -> None:
        self.quiet = quiet
        self.stream = stream
        self.terminal = err.is_terminal if terminal is None else terminal
        self.clock = clock
        self.started = clock()
        self.first_after_s = first_after_s
        if every_s is None:
            try:
                every_s = float(os.environ.get(PROGRESS_ENV, "5"))
            except ValueError:
                every_s = 5.0
        self.every_s = every_s
        self.stage = ""
        self.stage_started = self.started
        self.last_line: float | None = None
        self.bar: Progress | None = None
        self.task: Any = None

    def time_left(self, fraction: float | None, now: float) -> float | None:
        if fraction is None or fraction < 0.02 or fraction >= 1:
            return None
        return (now - self.stage_started) / fraction * (1 - fraction)

    def describe(self, fraction: float | None, now: float) -> str:
        if fraction is None:
            return f"{self.stage} ({_seconds(now - self.started)} so far)"
        left = self.time_left(fraction, now)
        text = f"{self.stage}: {fraction * 100:.0f} %"
        return text + (f", about {_seconds(left)} left" if left is not None else "")

    def __call__(self, stage: str, fraction: float | None = None) -> None:
        now = self.clock()
        if stage != self.stage:
            self.stage, self.stage_started = stage, now
        if self.quiet or now - self.started < self.first_after_s:
            return
        if not self.terminal:
            if self.last_line is None or now - self.last_line >= self.every_s:
                self.last_line = now
                text = f"vid2dcm: {self.describe(fraction, now)}\n"
                target = self.stream or sys.stderr
                target.write(text)
                target.flush()
            return
        left = self.time_left(fraction, now)
        if self.bar is None:
            # imported only for a terminal that waits long enough to see a bar (issue 17)
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TaskProgressColumn(), TextColumn("{task.fields[left]}"),
                                console=err, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(stage, total=1.0, left="")
        self.bar.update(self.task, description=stage, completed=fraction or 0,
                        left=f"{_seconds(left)} left" if left is not None else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
