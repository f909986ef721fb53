"""What a batch folder says at a glance: ``scores.json`` (scores aggregated over the prompt set, per
detector) and ``summary.html`` (every prompt: status, contact sheet, scores; relative links, so the
folder can be moved or served as it is), both written from index.jsonl in streaming passes.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..scoring import Aggregate
from . import output
from .batch_index import BatchIndex

PAGE_ROWS = 500  # a page a browser opens at once, even for a 100,000-prompt batch
SCORE_KEYS = ("presence", "count_acc", "box_iou", "relation_acc", "region_acc", "all_ok")


@dataclass
class Summary:
    counts: Counter = field(default_factory=Counter)  # records by status
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # detector -> aggregate
    pages: list[Path] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def aggregate(index: BatchIndex) -> Summary:
    """Counts by status and, per detector, the scores of every scored prompt (one pass, nothing kept);
    ``pages``: the summary pages that hold the records."""
    summary, tallies = Summary(), {}
    for record in index.records():
        summary.counts[record["status"]] += 1
        scores = record.get("scores") or {}
        if record["status"] == "ok" and scores.get("images"):
            tallies.setdefault(scores["detector"], Aggregate()).add_prompt(scores)
    summary.scores = {name: agg.result() for name, agg in tallies.items()}
    pages = max(1, -(-summary.total // PAGE_ROWS))
    summary.pages = [index.folder / _page_name(k) for k in range(1, pages + 1)]
    return summary


def write_summary(folder: str | Path) -> Summary:
    """scores.json (when anything is scored) and summary.html (+ summary-2.html ... for long batches)."""
    index = BatchIndex(folder)
    summary = aggregate(index)
    if summary.scores:
        output.atomic_write_json(index.folder / "scores.json",
                                 {"created": output.utc_now(), "detectors": summary.scores})
    rows: list[str] = []
    page = 1
    for record in index.records():
        rows.append(_row(record))
        if len(rows) == PAGE_ROWS:
            _write_page(summary, page, rows, index.folder)
            rows, page = [], page + 1
    if rows or page == 1:
        _write_page(summary, page, rows, index.folder)
    return summary


def _page_name(k: int) -> str:
    return "summary.html" if k == 1 else f"summary-{k}.html"


def _write_page(summary: Summary, page: int, rows: list[str], folder: Path) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    links = " ".join(f'<a href="{_page_name(k)}">{k}</a>' if k != page else f"<b>{k}</b>"
                     for k in range(1, len(summary.pages) + 1))
    parts = [
        "<!doctype html>", '<meta charset="utf-8">', f"<title>batch {html.escape(folder.name)}</title>",
        "<style>body{font-family:sans-serif;margin:1em} table{border-collapse:collapse} "
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left} "
        "img{image-rendering:pixelated;height:140px} .error{color:#a00}</style>",
        f"<h1>batch {html.escape(folder.name)}</h1>",
        f"<p>{summary.total} prompt(s): {html.escape(counts or 'none')}. Records: "
        '<a href="index.jsonl">index.jsonl</a>.</p>',
    ]
    for detector, agg in summary.scores.items():
        cells = "".join(f"<td>{_num(agg.get(k))}</td>" for k in SCORE_KEYS)
        parts.append(f"<p>scores by <code>{html.escape(detector)}</code> over {agg['prompts']} prompt(s), "
                     f"{agg['images']} image(s) (<a href=\"scores.json\">scores.json</a>):</p><table><tr>"
                     + "".join(f"<th>{k}</th>" for k in SCORE_KEYS) + f"</tr><tr>{cells}</tr></table>")
    if len(summary.pages) > 1:
        parts.append(f"<p>pages: {links}</p>")
    parts.append("<table><tr><th>id</th><th>prompt</th><th>status</th><th>contact sheet</th><th>scores</th></tr>")
    parts.extend(rows)
    parts.append("</table>")
    output.atomic_write(folder / _page_name(page), "\n".join(parts) + "\n")


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _row(record: dict) -> str:
    e = html.escape
    prompt = e(record["prompt"])
    if record.get("dir") and record["status"] == "ok":
        prompt = f'<a href="{e(record["dir"])}/">{prompt}</a>'
    sheet = record.get("sheet")
    image = f'<a href="{e(sheet)}"><img src="{e(sheet)}" loading="lazy" alt="sheet"></a>' if sheet else ""
    if record["status"] == "error":
        err = record.get("error") or {}
        what = f'{err.get("stage", "")} {err.get("type", "")}: {err.get("message", "")}'
        detail = f'<span class="error">{e(what)}</span>'
    else:
        s = ((record.get("scores") or {}).get("summary")) or {}
        detail = " &middot; ".join(f"{k} {_num(s.get(k))}" for k in SCORE_KEYS if s.get(k) is not None)
        if record["status"] == "planned":
            detail = f"{len((record.get('plan') or {}).get('objects', []))} object(s) planned"
    return (f"<tr><td>{e(str(record['id']))}</td><td>{prompt}</td><td>{e(record['status'])}</td>"
            f"<td>{image}</td><td>{detail}</td></tr>")
