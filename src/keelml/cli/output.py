"""Console output: rich on a terminal, plain lines elsewhere; progress for the runner's events.

rich.progress (about 45 ms to import) loads only when a progress display starts, so `keel --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from keelml.engine.runner import StepResult
    from keelml.engine.step import Step

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class StepProgress:
    """Shows a spinner with elapsed time for each running step (on a terminal) or plain lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> StepProgress:
        if self.console.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step_started(self, step: Step) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(f"running [bold]{step.name}[/bold]", total=None)
        else:
            self.console.print(f"keel: step {step.name} started", soft_wrap=True)

    def step_finished(self, result: StepResult) -> None:
        if self._progress is not None and self._task is not None and result.status == "ran":
            self._progress.remove_task(self._task)
            self._task = None
        mark = "[green]✓[/green]" if result.status == "ran" else "[dim]•[/dim]"
        self.console.print(f"{mark} {result.name:<12} {result.status:<7} {result.duration_s:7.2f}s",
                           soft_wrap=True)
