"""Batch rendering: a prompt file -> a run folder per prompt, an index, scores and a summary.

    report = run_batch("prompts.jsonl", "outputs/batch", planner="rules", model="models/shapes-tiny",
                       steps=20, detector="shapes")
    report = score_batch("outputs/batch", "owlv2:google/owlv2-base-patch16-ensemble")

``run_batch`` works in two phases: it plans every prompt that has no plan yet (the planner loaded once),
then renders every planned prompt (the pipeline loaded once; the detector too, with ``detector``).
Each item's record goes to this process's journal the moment it changes (``batch_index``), so a re-run
skips what is done and redoes only what was in flight. Several processes started by ``torchrun`` or
``accelerate launch`` split the remaining items with accelerate's ``PartialState.split_between_processes``
(contiguous shares, in input order); each writes its own journal, and the main process merges them into
index.jsonl after a barrier and writes the summary. A crashed process's items are simply not done: the
next run - with any number of processes - picks them up.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ModelUnavailableError, PlanAndRenderError, UsageError
from ..geometry import SizePrior
from ..renderer.settings import RenderSettings
from ..scene import ScenePlan
from . import api, output
from .batch_index import BatchIndex, BatchItem, Entry, Journal, read_items
from .batch_summary import Summary, aggregate, write_summary

Event = Callable[[str, dict], None]
RUNS = "runs"  # the run folders' parent inside the batch folder
BARRIER_TIMEOUT = timedelta(hours=24)  # a process that finishes early waits this long for the others


# --------------------------------------------------------------------------
# processes: one, or those a launcher started
# --------------------------------------------------------------------------


class Processes:
    """This process's place among those ``torchrun`` / ``accelerate launch`` started (accelerate's
    ``PartialState``; gloo on CPUs, NCCL on GPUs), or the only process when nothing launched it."""

    def __init__(self) -> None:
        import torch
        from accelerate import PartialState

        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        self.state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)
        if self.count > 1 and self.state.device.type == "cuda":
            torch.cuda.set_device(self.state.device)  # "cuda" now means this process's GPU, for every model

    @property
    def rank(self) -> int:
        return self.state.process_index

    @property
    def count(self) -> int:
        return self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.state.is_main_process

    def wait(self) -> None:
        self.state.wait_for_everyone()

    def total(self, counts: list[int]) -> list[int]:
        """Element-wise sums of every process's ``counts`` (each process gets them)."""
        if self.count == 1:
            return counts
        from accelerate.utils import gather_object

        gathered = gather_object([counts])
        return [sum(c[k] for c in gathered) for k in range(len(counts))]

    def close(self) -> None:
        """Tear the process group down after the last collective: a gloo group left to the interpreter's exit
        can abort the process ("terminate called without an active exception") after its work is done."""
        if self.count > 1:
            self.state.destroy_process_group()

    @contextmanager
    def share(self, work: list) -> Iterator[list]:
        with self.state.split_between_processes(work) as mine:
            yield list(mine)


# --------------------------------------------------------------------------
# what a run does, item by item
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Task:
    item: BatchItem
    entry: Entry | None  # where its latest record is (None: never planned)
    plan: bool = False
    render: bool = False
    score: bool = False


@dataclass
class BatchReport:
    """What a run did (counts over every process) and, on the main process, the merged state of the batch."""

    out: Path
    total: int = 0  # items in the batch
    done_before: int = 0  # items that needed nothing at the start
    share: int = 0  # items this process worked on
    planned: int = 0
    rendered: int = 0
    scored: int = 0
    errors: int = 0
    rank: int = 0
    processes: int = 1
    timings: dict[str, float] = field(default_factory=dict)
    summary: Summary | None = None  # main process only


def _tasks(items: list[BatchItem], entries: dict[str, Entry], *, dry_run: bool, retry_errors: bool,
           detector: str | None, rescore: bool = False) -> list[Task]:
    """The items that need work, and which: plan, render, score."""
    tasks = []
    for item in items:
        e = entries.get(item.id)
        if e is not None and e.fingerprint != item.fingerprint:
            raise UsageError(f"item {item.id!r} of this batch folder was made from another prompt or other settings "
                             f"than the prompt file now gives ({item.prompt!r}); use another --out, or give the "
                             "items new ids")
        retry = retry_errors and e is not None and e.status == "error"
        plan = e is None or (retry and e.stage == "plan")
        render = not dry_run and (plan or e.status == "planned" or (retry and e.stage != "plan"))
        score = detector is not None and (render or (e is not None and e.status == "ok" and
                                                     (rescore or e.scored_with != detector)))
        if plan or render or score:
            tasks.append(Task(item, e, plan, render, score))
    return tasks


def _emit(on_event: Event | None, name: str, **data: Any) -> None:
    if on_event is not None:
        on_event(name, data)


def _base_record(item: BatchItem, rank: int) -> dict[str, Any]:
    return {"id": item.id, "index": item.index, "prompt": item.prompt, "request": item.request,
            **({"meta": item.meta} if item.meta is not None else {}), "rank": rank}


def _error(e: BaseException, stage: str) -> dict[str, Any]:
    if isinstance(e, PlanAndRenderError):
        return {"type": e.type, "message": e.message, "stage": stage}
    return {"type": "unexpected", "message": f"{type(e).__name__}: {e}", "stage": stage}


def _plan_one(item: BatchItem, backend, settings: RenderSettings, side: int, rank: int,
              size_prior=None) -> dict[str, Any]:
    """A planned record (the plan, its run folder) or an error record; only a missing model raises.
    ``size_prior``: the model folder's (guidance.json), as ``generate`` plans with it."""
    from plan_and_render.planner import make_plan

    record = _base_record(item, rank)
    t0 = time.perf_counter()
    try:
        canvas = api.make_canvas(settings.width, settings.height, default=side)
        plan = make_plan(item.prompt, backend, canvas=canvas, seed=settings.seed, size_prior=size_prior)
        record.update(status="planned", plan=plan.model_dump(mode="json"),
                      dir=f"{RUNS}/{item.index + 1:06d}-{output.slugify(item.prompt)}")
    except ModelUnavailableError:
        raise
    except Exception as e:  # noqa: BLE001 - one prompt's failure must not lose the batch
        record.update(status="error", error=_error(e, "plan"))
    record["timings"] = {"plan_s": round(time.perf_counter() - t0, 4)}
    record["updated"] = output.utc_now()
    return record


def _render_one(record: dict, settings: RenderSettings, model: str, out: Path) -> tuple[dict, list]:
    """Render a planned record into its run folder (``generate``'s files) plus a contact sheet."""
    plan = ScenePlan.model_validate(record["plan"])
    t0 = time.perf_counter()
    result = api.generate(plan=plan, model=model, settings=settings, out_dir=out / record["dir"], progress=False)
    render_s = time.perf_counter() - t0
    names = result.metadata["files"]["images"]
    sheet = _contact_sheet(result, out / record["dir"])
    meta = result.metadata
    record.update(status="ok", error=None, seed=meta["seed"], settings=meta["settings"],
                  images=[f"{record['dir']}/{n}" for n in names], sheet=f"{record['dir']}/{sheet}" if sheet else None,
                  attention=meta["scores"], warnings=meta["warnings"])
    record["timings"] = {**record.get("timings", {}), "render_s": round(render_s, 4)}
    return record, result.images


def _contact_sheet(result, folder: Path) -> str | None:
    """sheet.png: the images and the layout preview side by side, captioned."""
    from PIL import Image

    tiles = list(result.images)
    labels = [f"seed {result.metadata['seed']}" + (f" #{k + 1}" if len(tiles) > 1 else "") for k in range(len(tiles))]
    layout = folder / "layout.png"
    if layout.exists():
        with Image.open(layout) as im:
            tiles.append(im.convert("RGB"))
        labels.append("layout")
    if not tiles:
        return None
    output.atomic_save_image(output.contact_sheet(tiles, labels, columns=len(tiles)), folder / "sheet.png")
    return "sheet.png"


def _score_one(record: dict, images: list | None, detector, out: Path) -> dict:
    """The record with ``scores`` from ``detector`` (images read from the run folder when not given)."""
    from PIL import Image

    from ..scoring import score_images

    t0 = time.perf_counter()
    try:
        if images is None:
            images = []
            for rel in record.get("images") or []:
                with Image.open(out / rel) as im:
                    images.append(im.convert("RGB"))
        record["scores"] = score_images(images, ScenePlan.model_validate(record["plan"]), detector)
    except OSError as e:
        record["scores"] = {"detector": detector.name,
                            "error": {"type": "usage", "message": f"cannot read an image: {e}"}}
    record["timings"] = {**record.get("timings", {}), "score_s": round(time.perf_counter() - t0, 4)}
    return record


# --------------------------------------------------------------------------
# the two entry points
# --------------------------------------------------------------------------


def run_batch(prompts_file: str | Path, out: str | Path, *, planner: str = api.DEFAULT_PLANNER,
              model: str | Path = api.DEFAULT_MODEL, settings: RenderSettings | None = None,
              detector: str | None = None, threshold: float | None = None, nms: float | None = None,
              dry_run: bool = False, retry_errors: bool = False, planner_options: dict | None = None,
              on_event: Event | None = None, **overrides: Any) -> BatchReport:
    """Plan, render (and with ``detector``, score) every prompt of ``prompts_file`` into ``out``, resuming
    a batch already there. ``settings``/``overrides`` are the batch's render settings; a JSONL line's own
    settings win for that line. ``dry_run`` plans and writes the records only. Returns a ``BatchReport``."""
    items = read_items(prompts_file)
    base = RenderSettings.build(settings, **overrides)
    per_item = {it.id: RenderSettings.build(base, **it.request) for it in items if it.request}
    if detector is not None:
        from ..scoring import parse_spec

        parse_spec(detector)  # a bad spec fails before anything is written
    prior = api.folder_size_prior(model)  # and so does a model folder whose guidance.json is not valid
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder for the batch")
    return _run(items, out, lambda it: per_item.get(it.id, base), dry_run=dry_run, retry_errors=retry_errors,
                detector=detector, threshold=threshold, nms=nms, model=str(model), planner=planner,
                planner_options=planner_options or {}, on_event=on_event, base=base, size_prior=prior)


def score_batch(out: str | Path, detector: str = "shapes", *, threshold: float | None = None,
                nms: float | None = None, force: bool = False, on_event: Event | None = None) -> BatchReport:
    """(Re)score the rendered prompts of a batch folder with ``detector``: those not yet scored by it, or all
    with ``force``. Resumable and distributable like ``run_batch``; index.jsonl and scores.json are updated."""
    from ..scoring import parse_spec

    parse_spec(detector)
    out = Path(out)
    if not (out / "index.jsonl").exists() and not BatchIndex(out).journals():
        raise UsageError(f"{str(out)!r} is not a batch folder (no index.jsonl); run `plan-and-render batch` first")
    return _run(None, out, lambda it: RenderSettings(), dry_run=True, retry_errors=False, detector=detector,
                threshold=threshold, nms=nms, rescore=force, on_event=on_event)


def _items_of(entries: dict[str, Entry], index: BatchIndex) -> list[BatchItem]:
    """The items of an existing batch, from its records (``score`` has no prompt file)."""
    items = []
    for ident, e in sorted(entries.items(), key=lambda kv: (kv[1].index, kv[0])):
        rec = index.read(e)
        items.append(BatchItem(e.index, ident, rec["prompt"], rec.get("request") or {}, rec.get("meta")))
    index.close()
    return items


def _run(items: list[BatchItem] | None, out: Path, settings_of: Callable[[BatchItem], RenderSettings], *,
         dry_run: bool, retry_errors: bool, detector: str | None, threshold: float | None, nms: float | None,
         model: str = "", planner: str = "", planner_options: dict | None = None, base: RenderSettings | None = None,
         rescore: bool = False, on_event: Event | None = None, size_prior: SizePrior | None = None) -> BatchReport:
    t_start = time.perf_counter()
    procs = Processes()
    out.mkdir(parents=True, exist_ok=True)
    index = BatchIndex(out)
    changed = procs.is_main and index.merge()  # what an earlier, interrupted run left in journals
    procs.wait()
    entries = index.scan()
    items = items if items is not None else _items_of(entries, index)
    tasks = _tasks(items, entries, dry_run=dry_run, retry_errors=retry_errors, detector=detector, rescore=rescore)
    report = BatchReport(out, total=len(items), done_before=len(items) - len(tasks), rank=procs.rank,
                         processes=procs.count)
    journal = None
    try:
        with procs.share(tasks) as mine:
            report.share = len(mine)
            _emit(on_event, "start", total=report.total, done=report.done_before, todo=len(tasks), share=len(mine),
                  rank=procs.rank, processes=procs.count)
            journal = index.journal(procs.rank)
            if any(t.plan for t in mine):
                _plan_phase(mine, journal, planner, planner_options or {}, model, size_prior, settings_of, report,
                            on_event)
            if any(t.render or t.score for t in mine):
                _render_phase(mine, journal, index, model, settings_of, detector, threshold, nms, base, out, report,
                              on_event)
    except KeyboardInterrupt:
        if journal is not None:
            journal.close()
        if procs.count == 1:  # alone, fold what is done into index.jsonl before stopping
            index.merge()
        raise
    finally:
        if journal is not None:
            journal.close()
        index.close()
    counts = procs.total([report.planned, report.rendered, report.scored, report.errors])
    procs.close()
    report.planned, report.rendered, report.scored, report.errors = counts
    if procs.is_main:
        changed = index.merge() or changed
        fresh = changed or not (out / "summary.html").exists()
        report.summary = write_summary(out) if fresh else aggregate(index)
        _emit(on_event, "merged", summary=report.summary)
    report.timings["total_s"] = round(time.perf_counter() - t_start, 3)
    return report


def _plan_phase(tasks: list[Task], journal: Journal, planner: str, planner_options: dict, model: str,
                size_prior: SizePrior | None, settings_of: Callable, report: BatchReport, on_event: Event | None) -> None:
    todo = [t for t in tasks if t.plan]
    t0 = time.perf_counter()
    backend = api.get_planner(planner, **planner_options)
    report.timings["planner_load_s"] = round(time.perf_counter() - t0, 3)
    side = api.native_size(model) or api.DEFAULT_SIZE
    _emit(on_event, "phase", phase="plan", total=len(todo))
    for t in todo:
        record = _plan_one(t.item, backend, settings_of(t.item), side, report.rank, size_prior)
        entry = journal.append(record)
        report.planned += record["status"] == "planned"
        report.errors += record["status"] == "error"
        if record["status"] == "error":
            t.render = t.score = False
        t.entry = entry if t.render or t.score else None  # a dry run keeps nothing per item: memory stays flat
        _emit(on_event, "item", phase="plan", record=record)


def _render_phase(tasks: list[Task], journal: Journal, index: BatchIndex, model: str, settings_of: Callable,
                  detector_spec: str | None, threshold, nms, base: RenderSettings | None, out: Path,
                  report: BatchReport, on_event: Event | None) -> None:
    todo = [t for t in tasks if t.render or t.score]
    if any(t.render for t in todo):
        t0 = time.perf_counter()
        api.get_pipeline(model, base.device if base else None, base.dtype if base else None)
        report.timings["pipeline_load_s"] = round(time.perf_counter() - t0, 3)
    detector = None
    if detector_spec is not None:
        from ..scoring import get_detector

        t0 = time.perf_counter()
        detector = get_detector(detector_spec, threshold=threshold, nms=nms)
        report.timings["detector_load_s"] = round(time.perf_counter() - t0, 3)
    _emit(on_event, "phase", phase="render" if any(t.render for t in todo) else "score", total=len(todo))
    for t in todo:
        record = index.read(t.entry)
        record.update(rank=report.rank, updated=output.utc_now())
        images = None
        if t.render:
            try:
                record, images = _render_one(record, settings_of(t.item), model, out)
                report.rendered += 1
            except ModelUnavailableError:
                raise
            except Exception as e:  # noqa: BLE001 - one prompt's failure must not lose the batch
                record.update(status="error", error=_error(e, "render"))
                report.errors += 1
        if detector is not None and record["status"] == "ok":
            record = _score_one(record, images, detector, out)
            report.scored += 1
        t.entry = journal.append(record)
        _emit(on_event, "item", phase="render" if t.render else "score", record=record)
