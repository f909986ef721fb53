"""The ``batch`` and ``score`` commands: a thin click layer over ``batch_render``.

    plan-and-render batch PROMPTS --out DIR [--score DETECTOR] [render options]
    plan-and-render score DIR [--detector DETECTOR] [--force]
    torchrun --nproc_per_node 4 -m plan_and_render batch PROMPTS --out DIR ...   (one process per GPU)

Only the main process draws the progress bar and prints the summary; every process prints its own
items' errors as warnings. docs/batch.md describes the folder, the index and the scoring rules.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from . import api
from .options import backend_options, planner_options, render_options, render_settings
from .terminal import quiet_libraries, stderr_console, warn_line

DETECTOR_HELP = ("shapes (the exact detector of the shapes world: models/shapes-tiny), or an open-vocabulary "
                 "detector through transformers: owlv2:MODEL, owlvit:MODEL, grounding-dino:MODEL (a folder or a "
                 "hub id in the local Hugging Face cache)")
MAX_WARNINGS = 20  # per process; the rest are in index.jsonl and summary.html
LOG_SECONDS = 60.0  # without a terminal (a log file, a job scheduler): a progress line this often
SCORE_COLUMNS = {"presence": "present", "count_acc": "counts", "box_iou": "box IoU", "box_iou_found": "IoU found",
                 "relation_acc": "relations", "region_acc": "regions", "all_ok": "all right"}


class RateColumn(ProgressColumn):
    """Items per second, or seconds per item when slower than one a second."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-", style="progress.data.speed")
        return Text(f"{speed:.1f} it/s" if speed >= 1 else f"{1 / speed:.1f} s/it", style="progress.data.speed")


class BatchDisplay:
    """Turns ``batch_render`` events into a progress bar (main process) and warnings (every process)."""

    def __init__(self, out: Path):
        self.out, self.err = out, stderr_console()
        self.progress: Progress | None = None
        self.task = None
        self.rank, self.processes, self.warned = 0, 1, 0
        self.log = {"phase": "", "total": 0, "done": 0, "start": 0.0, "printed": 0.0}  # without a terminal

    def __call__(self, name: str, data: dict) -> None:
        if name == "start":
            self.rank, self.processes = data["rank"], data["processes"]
            if self.rank == 0:
                done = f"{data['done']} of {data['total']} prompts already done; " if data["done"] else ""
                split = f" between {self.processes} processes" if self.processes > 1 else ""
                self.err.print(f"{self.out}: {done}{data['todo']} to do{split}")
        elif name == "phase" and self.rank == 0:
            self.stop()
            who = f" (process 0 of {self.processes})" if self.processes > 1 else ""
            if not self.err.is_terminal:  # a log gets a line per phase and one a minute, not a redrawn bar
                self.err.print(f"{data['phase']}{who}: {data['total']} prompt(s)")
                now = time.monotonic()
                self.log = {"phase": data["phase"], "total": data["total"], "done": 0, "start": now, "printed": now}
                return
            self.progress = Progress(TextColumn(f"{data['phase']}{who}"), BarColumn(), MofNCompleteColumn(),
                                     RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=self.err)
            self.task = self.progress.add_task(data["phase"], total=data["total"])
            self.progress.start()
        elif name == "item":
            if self.progress is not None:
                self.progress.advance(self.task)
            elif self.rank == 0:
                self._log_line()
            self._warn(data["record"])

    def _log_line(self) -> None:
        log, now = self.log, time.monotonic()
        log["done"] += 1
        if now - log["printed"] < LOG_SECONDS or log["done"] == log["total"]:
            return
        log["printed"] = now
        per = (now - log["start"]) / log["done"]
        left = per * (log["total"] - log["done"])
        self.err.print(f"{log['phase']}: {log['done']}/{log['total']}, {per:.2f} s/it, about {left / 60:.0f} min left")

    def _warn(self, record: dict) -> None:
        err = record.get("error") if record["status"] == "error" else (record.get("scores") or {}).get("error")
        if not err or self.warned > MAX_WARNINGS:
            return
        self.warned += 1
        where = f"[process {self.rank}] " if self.processes > 1 else ""
        if self.warned > MAX_WARNINGS:
            warn_line(f"{where}more errors: see {self.out / 'index.jsonl'}")
        else:
            warn_line(f"{where}{record['id']} {record['prompt']!r}: {err.get('stage', 'score')} "
                      f"{err['type']}: {err['message']}")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _report(report, what: str) -> None:
    """The closing lines (main process): the batch's state, the scores table, where the summary is."""
    err = stderr_console()
    s = report.summary
    if s is None:
        return
    states = ", ".join(f"{n} {status}" for status, n in sorted(s.counts.items()))
    who = f"{report.processes} processes" if report.processes > 1 else "1 process"
    err.print(f"{report.out}: {s.total} prompt(s), {states}; this run {what} "
              f"({report.timings.get('total_s', 0):.1f} s, {who})")
    for detector, agg in s.scores.items():
        table = Table(title=f"scores by {detector}: {agg['prompts']} prompt(s), {agg['images']} image(s)",
                      title_justify="left")
        for label in SCORE_COLUMNS.values():
            table.add_column(label, justify="right")
        table.add_row(*("-" if agg.get(k) is None else f"{agg[k]:.3f}" for k in SCORE_COLUMNS))
        err.print(table)
    err.print(f"summary: {s.pages[0]}" + (f" (+{len(s.pages) - 1} page(s))" if len(s.pages) > 1 else ""))
    click.echo(str(report.out))  # stdout: the folder, for scripts


def _canonical(detector: str | None) -> str | None:
    from ..scoring import parse_spec

    if detector is None:
        return None
    family, source = parse_spec(detector)
    return family if source is None else f"{family}:{source}"


@click.command("batch", help="Plan, render and (with --score) score every prompt of a file: one run folder per "
               "prompt, DIR/index.jsonl (one record per prompt), contact sheets and DIR/summary.html. PROMPTS is "
               "a text file (one prompt a line) or JSONL (\"prompt\", optional \"id\", \"meta\" and render settings "
               "such as \"seed\", \"method\", \"num_images\" per line). Rerunning resumes; under torchrun or "
               "accelerate launch the prompts are split between the processes (docs/batch.md).")
@click.argument("prompts", type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="The batch folder (created; "
              "rerunning with the same folder resumes).")
@planner_options
@click.option("--model", "-m", default=api.DEFAULT_MODEL, show_default=True, help="Diffusion weights: hub id "
              "(HF cache), local diffusers folder, or one .safetensors/.ckpt file. Offline demo: models/shapes-tiny.")
@render_options()
@click.option("--score", "detector", help=f"Score each image against its plan with this detector: {DETECTOR_HELP}.")
@click.option("--threshold", type=click.FloatRange(0, 1), help="Open-vocabulary detectors: the score a box needs "
              "(default: LMD's 0.15 for OWL, 0.35 for Grounding DINO).")
@click.option("--nms", type=click.FloatRange(0, 1), help="Open-vocabulary detectors: class-aware NMS IoU "
              "(default: LMD's 0.15).")
@click.option("--dry-run", is_flag=True, help="Plan every prompt and write the records only: no rendering.")
@click.option("--retry-errors", is_flag=True, help="Plan or render again the prompts whose record is an error.")
def batch_cmd(prompts, out, planner, base_url, retries, timeout, planner_device, model, detector, threshold, nms,
              dry_run, retry_errors, **render) -> None:
    from .batch_render import run_batch

    settings = render_settings(render)  # every option checked before anything is read or written
    detector = _canonical(detector)
    quiet_libraries(rendering=not dry_run)
    display = BatchDisplay(out)
    try:
        report = run_batch(prompts, out, planner=planner, model=model, settings=settings, detector=detector,
                           threshold=threshold, nms=nms, dry_run=dry_run, retry_errors=retry_errors,
                           planner_options=backend_options(base_url, retries, timeout, planner_device),
                           on_event=display)
    except KeyboardInterrupt:
        display.stop()
        warn_line(f"interrupted; {out} keeps every finished prompt: rerun the same command to resume")
        raise
    finally:
        display.stop()
    done = f"planned {report.planned}, rendered {report.rendered}, scored {report.scored}, {report.errors} error(s)"
    _report(report, done)


@click.command("score", help="Score (again) the images of a batch folder against their plans: presence, counts, "
               "box IoU, relations and regions per image, aggregated in DIR/scores.json (docs/batch.md).")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--detector", "-d", default="shapes", show_default=True, help=DETECTOR_HELP + ".")
@click.option("--threshold", type=click.FloatRange(0, 1), help="Open-vocabulary detectors: the score a box needs.")
@click.option("--nms", type=click.FloatRange(0, 1), help="Open-vocabulary detectors: class-aware NMS IoU.")
@click.option("--force", is_flag=True, help="Score every image again, also those this detector already scored.")
def score_cmd(folder, detector, threshold, nms, force) -> None:
    from .batch_render import score_batch

    quiet_libraries(rendering=True)
    display = BatchDisplay(folder)
    try:
        report = score_batch(folder, _canonical(detector), threshold=threshold, nms=nms, force=force, on_event=display)
    finally:
        display.stop()
    _report(report, f"scored {report.scored}")


def register(group: click.Group) -> None:
    """Add ``batch`` and ``score`` to the main command."""
    group.add_command(batch_cmd)
    group.add_command(score_cmd)
