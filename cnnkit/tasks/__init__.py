"""Tasks: what the one engine learns. ``classify`` (one label per image) and ``localize`` (the label and one
box, the notes' classification + localisation); ``detect``, ``verify`` and ``segment`` come through the same
interface.

A task implements :class:`cnnkit.engine.task.Task` (data, head, loss, validation metrics, run-card fields,
report) and, for the commands after training, ``build_from_card``, ``predictor`` and ``evaluate``. The task
is recorded in the run card, so ``evaluate``, ``predict``, ``report``, ``explain`` and ``--resume`` read it
from the run. See ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CnnkitError
from ..runcard import model_path, read_card

if TYPE_CHECKING:  # `cnnkit train --help` reads TASKS without loading the config schema
    from ..config import Config
    from ..runcard import RunCard

TASKS = {
    "classify": "cnnkit.tasks.classify:Classify",
    "localize": "cnnkit.tasks.localize:Localize",
    "detect": "cnnkit.tasks.detect:Detect",
    "segment": "cnnkit.tasks.segment:Segment",
    "verify": "cnnkit.tasks.verify:Verify",
}

# An extra report section: (run_dir, **report options) -> report blocks (cnnkit.evaluate.report.Block); it writes
# its images under the report's files folder and never raises. Higher layers make them (the layer figures of
# cnnkit.explain.units_report) and the commands hand them in, so no task imports those layers.
ReportSection = Callable[..., list[tuple[str, Any]]]


def get_task(name: str, report_sections: Sequence[ReportSection] = ()) -> Any:
    """A fresh instance of the task ``name`` (tasks hold a run's loss and augmentation, so one per run).

    ``report_sections`` are added to its report where the task's report takes them (classify); others ignore them.
    """
    if name not in TASKS:
        raise CnnkitError(f"expected a task among {', '.join(TASKS)}, found {name!r}")
    module, _, cls = TASKS[name].partition(":")
    task = getattr(importlib.import_module(module), cls)()
    if report_sections and hasattr(task, "report_sections"):
        task.report_sections = tuple(report_sections)
    return task


def train(cfg: Config, log=print, progress: bool | None = None, report_sections: Sequence[ReportSection] = ()) -> Path:
    """Train a new run of ``cfg.task.name``; returns its run directory. ``report_sections``: see :func:`get_task`."""
    from ..engine import train as engine_train

    return engine_train(cfg, get_task(cfg.task.name, report_sections), log, progress)


def resume(
    run_dir: str | Path,
    log=print,
    progress: bool | None = None,
    epochs: int | None = None,
    report_sections: Sequence[ReportSection] = (),
) -> Path:
    """Continue an interrupted run with its own task and config (``epochs``: extend it to that many in all)."""
    from ..engine import resume as engine_resume

    return engine_resume(run_dir, get_task(read_card(run_dir).task, report_sections), log, progress, epochs)


def load(run_dir: str | Path, device: str = "cpu") -> Any:
    """The predictor of a run for its task: ``.predict(images)``, ``.model``, ``.classes`` (``cnnkit.load``)."""
    return get_task(read_card(run_dir).task).predictor(Path(run_dir), device)


def build_from_card(card: RunCard, run_dir: str | Path) -> Any:
    """The run's model, untrained (weights not loaded), built as its task builds it."""
    return get_task(card.task).build_from_card(card, model_path(card, run_dir))


def evaluate_runs(runs: list[str], **opts: Any) -> list[tuple[dict[str, Any], str]]:
    """Evaluate runs of one task: a list of (metrics, terminal text), one per run (or one for an ensemble).

    ``opts`` are the task's evaluate options (``data``, ``split``, ``data_dir``, ``ensemble``, ``tta``, …, and
    ``device``: ``auto``, ``cpu`` or ``cuda``, default ``cpu``; a CUDA device asked for and missing is refused
    before any data is loaded)."""
    from ..runtime import resolve_device

    resolve_device(opts.get("device", "cpu"))
    tasks = {read_card(r).task for r in runs}
    if len(tasks) > 1:
        raise CnnkitError(f"expected runs of one task, found {', '.join(sorted(tasks))}; evaluate them separately")
    return get_task(tasks.pop()).evaluate(list(runs), opts)


def report(run_dir: str | Path, report_sections: Sequence[ReportSection] = (), **opts: Any) -> Path:
    """Write the run's report (``report.html`` and ``report.md``) as its task builds it; returns the HTML path.
    ``report_sections``: see :func:`get_task`."""
    return get_task(read_card(run_dir).task, report_sections).report(Path(run_dir), **opts)


__all__ = ["TASKS", "build_from_card", "evaluate_runs", "get_task", "load", "report", "resume", "train"]
