"""Batch planning: a file of prompts -> a JSONL file of plans, resumable.

Each output line is a plan (plan-format.md) or an error record, both carrying
``prompt``. Lines are appended one ``write`` each and synced, so a Ctrl-C
leaves only whole lines and a killed process at most one partial last line,
which the next run removes before it resumes. Prompts that already have a
line are skipped; when the run completes, the file is in input order.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from plan_and_render.errors import ModelUnavailableError, PlanAndRenderError, UsageError
from plan_and_render.scene import Canvas

from . import output

if TYPE_CHECKING:
    from plan_and_render.planner import Planner

Progress = Callable[[int, str, dict], None]  # (index in input, prompt, record written)


@dataclass
class BatchStats:
    """What one batch run did. ``done`` counts lines now in the file for the input's prompts."""

    total: int
    planned: int = 0
    errors: int = 0
    skipped: int = 0
    repaired: bool = False
    extra: int = 0  # lines kept for prompts that are no longer in the input file
    file_lines: int = 0  # lines in the output file when the run ended
    file_errors: int = 0  # of which error records
    out: Path | None = None
    error_types: Counter = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return self.planned + self.errors + self.skipped


def prompt_key(text: str) -> str:
    """Prompts match across runs after whitespace is collapsed (the planner does the same)."""
    return " ".join(str(text).split())


def read_text(path: str | Path, what: str = "prompt file") -> str:
    """A UTF-8 text file's contents; every way it cannot be read is one ``UsageError`` line."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {str(path)!r} is a folder; give a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {str(path)!r} is not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None


def read_prompts(path: str | Path) -> list[str]:
    """One prompt a line; blank lines are skipped."""
    prompts = [prompt_key(line) for line in read_text(path).splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"prompt file {str(path)!r} has no prompts (one prompt a line)")
    return prompts


def load_records(path: str | Path) -> tuple[list[dict], bool]:
    """The complete records already in ``path``; a partial last line is cut off the file (True when cut)."""
    path = Path(path)
    if not path.exists():
        return [], False
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records: list[dict] = []
    keep = 0
    for i, line in enumerate(lines):
        if not line.strip():
            keep += len(line) + 1
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "prompt" not in rec:
                raise ValueError("no prompt")
        except ValueError:
            if i == len(lines) - 1 and not tail:  # a complete-looking but broken last line: also a crash remnant
                break
            raise UsageError(f"{str(path)!r} line {i + 1} is not a plan or error record; "
                             "fix or move the file, then rerun") from None
        records.append(rec)
        keep += len(line) + 1
    repaired = keep != len(data)
    if repaired:
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return records, repaired


def _write_in_order(path: Path, prompts: list[str], records: list[dict]) -> int:
    """Rewrite ``path`` atomically in input order; lines for unknown prompts go last. Returns their count."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_key[prompt_key(rec["prompt"])].append(rec)
    ordered = [by_key[p].pop(0) for p in prompts if by_key.get(p)]
    extra = [r for recs in by_key.values() for r in recs]
    if ordered + extra != records:
        output.atomic_write(path, "".join(_line(r) for r in ordered + extra))
    return len(extra)


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def _still_to_plan(prompts: list[str], records: list[dict]) -> list[tuple[int, str]]:
    """(index, prompt) of the prompts no record answers yet; a prompt given twice needs two records."""
    have = Counter(prompt_key(r["prompt"]) for r in records)
    todo: list[tuple[int, str]] = []
    for i, p in enumerate(prompts):
        if have[p] > 0:
            have[p] -= 1
        else:
            todo.append((i, p))
    return todo


def _plan_record(prompt: str, backend, canvas: Canvas | None, seed: int, stats: BatchStats) -> dict:
    """The JSONL record of one prompt: its plan, or an error record (a planner that cannot be reached at
    all, ``ModelUnavailableError``, stops the batch instead); ``stats`` counts it."""
    from plan_and_render.planner import make_plan

    try:
        rec = make_plan(prompt, backend, canvas=canvas, seed=seed).model_dump(mode="json")
        rec["prompt"] = prompt  # the resume key, whatever the planner did to the text
        stats.planned += 1
        return rec
    except ModelUnavailableError:
        raise
    except PlanAndRenderError as e:
        rec = e.record(prompt)
    except Exception as e:  # a backend bug must not lose the rest of the batch
        rec = {"prompt": prompt, "error": {"type": "unexpected", "message": f"{type(e).__name__}: {e}"}}
    stats.errors += 1
    stats.error_types[rec["error"]["type"]] += 1
    return rec


def plan_batch(prompts_file: str | Path, out: str | Path, planner: "str | Planner" = "local", *,
               canvas: Canvas | None = None, seed: int = 0, retry_errors: bool = False,
               on_start: Callable[[int, int], None] | None = None, on_progress: Progress | None = None,
               **planner_options: Any) -> BatchStats:
    """Plan every prompt of ``prompts_file`` into ``out`` (JSONL), resuming where a previous run stopped.

    The planner is built once (and only if some prompt still needs planning). Per-prompt failures become
    error records; a planner that cannot be reached at all (``ModelUnavailableError``) stops the batch.
    ``retry_errors`` plans again the prompts whose line is an error record.
    """
    from .api import get_planner

    prompts = read_prompts(prompts_file)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a folder; give a .jsonl file path")
    out.parent.mkdir(parents=True, exist_ok=True)
    records, repaired = load_records(out)
    if retry_errors and any("error" in r for r in records):
        records = [r for r in records if "error" not in r]
        output.atomic_write(out, "".join(_line(r) for r in records))
    stats = BatchStats(total=len(prompts), repaired=repaired, out=out)

    todo = _still_to_plan(prompts, records)
    stats.skipped = len(prompts) - len(todo)
    if on_start:
        on_start(len(prompts), stats.skipped)
    if todo:
        backend = get_planner(planner, **planner_options) if isinstance(planner, str) else planner
        with open(out, "a", encoding="utf-8") as f:
            for i, p in todo:
                rec = _plan_record(p, backend, canvas, seed, stats)
                f.write(_line(rec))  # one write per line: an interrupt leaves whole lines only
                f.flush()
                os.fsync(f.fileno())
                records.append(rec)
                if on_progress:
                    on_progress(i, p, rec)
    stats.extra = _write_in_order(out, prompts, records)
    stats.file_errors = sum(1 for r in records if "error" in r)
    stats.file_lines = len(records)
    return stats
