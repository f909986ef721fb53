"""A batch folder's bookkeeping: the items of a prompt file, and the index of their records.

    DIR/index.jsonl           one record per item, in input order: the merged state of the batch
    DIR/index.rank{k}.jsonl   process k's journal: a record appended each time one of its items changes
                              (planned, ok, error, scored); read and folded into index.jsonl by a merge

A record is one JSON line, written with one ``write`` and flushed at once, so a process killed at any
moment leaves whole lines and at most a partial last line, which every reader ignores (and fsynced
every few seconds, for power loss). A merge keeps the latest record of each item id (journals after
the index, later lines after earlier), writes index.jsonl atomically in input order and then removes
the journals; a crash between the two leaves journals that the next merge folds in again - the same
records, never a duplicate. Memory stays flat at any size: a merge holds one small entry per id (where
its record is), never the records themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import PlanAndRenderError, UsageError
from ..renderer.settings import RenderSettings
from . import output
from .batch import prompt_key, read_text

INDEX = "index.jsonl"
JOURNAL = re.compile(r"index\.rank(\d+)\.jsonl")
LINE_KEYS = ("prompt", "id", "meta")  # what a JSONL line may carry besides render settings
PROCESS_SETTINGS = ("device", "dtype")  # one pipeline per process: not per line
LINE_SETTINGS = tuple(f for f in RenderSettings.model_fields if f not in PROCESS_SETTINGS)


# --------------------------------------------------------------------------
# the prompt file
# --------------------------------------------------------------------------


@dataclass(slots=True)
class BatchItem:
    """One prompt of the input: where it is (``index``), its id, and its own render settings."""

    index: int
    id: str
    prompt: str
    request: dict[str, Any]  # the line's render settings (seed, method, width...), validated
    meta: Any = None  # carried to the record untouched (e.g. a benchmark's ground truth)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.prompt, self.request)


def fingerprint(prompt: str, request: dict | None) -> str:
    """What must not change under an item's id between runs: its prompt and its own settings."""
    text = json.dumps([prompt_key(prompt), request or {}], sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def read_items(path: str | Path) -> list[BatchItem]:
    """The items of a prompt file: one prompt a line, or JSONL (``.jsonl``, or a first line that is an
    object) with ``prompt`` and optional ``id``, ``meta`` and render settings per line. Every problem is
    one ``UsageError`` naming the line."""
    path = Path(path)
    lines = read_text(path).splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    jsonl = path.suffix.lower() == ".jsonl" or first.startswith("{")
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = _json_item(path, number, line, len(items)) if jsonl else \
            BatchItem(len(items), "", prompt_key(line), {})
        item.id = item.id or f"{len(items) + 1:06d}"
        if item.id in seen:
            raise UsageError(f"{path} line {number}: id {item.id!r} was already used on line {seen[item.id]}")
        seen[item.id] = number
        items.append(item)
    if not items:
        raise UsageError(f"prompt file {str(path)!r} has no prompts (one prompt a line, or JSONL with \"prompt\")")
    return items


def _json_item(path: Path, number: int, line: str, index: int) -> BatchItem:
    where = f"{path} line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise UsageError(f"{where} is not valid JSON ({e.msg} at character {e.pos}); each line is an object "
                         'like {"prompt": "a cat", "seed": 1}') from None
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        raise UsageError(f'{where} has no "prompt" text; each line is an object like {{"prompt": "a cat"}}')
    unknown = [k for k in data if k not in LINE_KEYS and k not in LINE_SETTINGS]
    if unknown:
        why = ("is set for the whole batch (one pipeline per process), not per line" if unknown[0] in
               PROCESS_SETTINGS else f"is unknown; a line may carry {', '.join(LINE_KEYS + LINE_SETTINGS)}")
        raise UsageError(f"{where}: key {unknown[0]!r} {why}")
    request = {k: v for k, v in data.items() if k in LINE_SETTINGS}
    try:
        RenderSettings(**request)
    except PlanAndRenderError as e:
        raise UsageError(f"{where}: {e.message}") from None
    ident = data.get("id")
    if ident is not None and (not isinstance(ident, (str, int)) or isinstance(ident, bool) or not str(ident).strip()):
        raise UsageError(f"{where}: id must be a non-empty string or a number, not {ident!r}")
    return BatchItem(index, "" if ident is None else str(ident).strip(), prompt_key(data["prompt"]), request,
                     data.get("meta"))


# --------------------------------------------------------------------------
# the index
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """Where an item's latest record is, and the little a run decides on without reading it."""

    status: str  # planned | ok | error
    path: Path
    offset: int
    index: int
    fingerprint: str
    stage: str | None = None  # for errors: plan | render
    scored_with: str | None = None  # the detector of the record's scores


def _entry(record: dict, path: Path, offset: int) -> Entry:
    scores = record.get("scores") or {}
    return Entry(record["status"], path, offset, int(record.get("index", 0)),
                 fingerprint(record["prompt"], record.get("request")), (record.get("error") or {}).get("stage"),
                 scores.get("detector"))


def _scan(path: Path, into: dict[str, Entry]) -> None:
    """Add the complete records of one file to ``into`` (later lines win); a partial last line is ignored."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                break  # a line cut by a kill: not a record
            if raw.strip():
                try:
                    record = json.loads(raw)
                    into[str(record["id"])] = _entry(record, path, offset)
                except (ValueError, KeyError, TypeError):
                    raise UsageError(f"{path} line {number} is not a batch record; fix or move the file, "
                                     "then rerun") from None
            offset += len(raw)


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class Journal:
    """One process's append-only record file: whole lines, flushed at once, fsynced every few seconds."""

    SYNC_SECONDS = 2.0

    def __init__(self, path: Path):
        self.path = path
        self._f = None  # opened by the first record: a process with nothing to do leaves no file
        self._synced = time.monotonic()

    def append(self, record: dict) -> Entry:
        if self._f is None:
            self._f = open(self.path, "ab")
        data = _line(record)
        offset = self._f.tell()
        self._f.write(data)  # one write: a kill leaves this line whole or partial, never half of two
        self._f.flush()
        if time.monotonic() - self._synced > self.SYNC_SECONDS:
            os.fsync(self._f.fileno())
            self._synced = time.monotonic()
        return _entry(record, self.path, offset)

    def close(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


class BatchIndex:
    """The records of one batch folder: scan, read, journal, merge."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / INDEX
        self._readers: dict[Path, Any] = {}

    def journals(self) -> list[Path]:
        found = [(int(m.group(1)), p) for p in self.folder.glob("index.rank*.jsonl")
                 if (m := JOURNAL.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def journal(self, rank: int) -> Journal:
        return Journal(self.folder / f"index.rank{rank}.jsonl")

    def scan(self, journals: bool = False) -> dict[str, Entry]:
        """Item id -> where its latest record is: index.jsonl, and the journals too when asked."""
        entries: dict[str, Entry] = {}
        sources = [self.path] if self.path.exists() else []
        for path in sources + (self.journals() if journals else []):
            _scan(path, entries)
        return entries

    def read(self, entry: Entry) -> dict:
        return json.loads(self._raw(entry))

    def _raw(self, entry: Entry) -> bytes:
        f = self._readers.get(entry.path)
        if f is None:
            f = self._readers[entry.path] = open(entry.path, "rb")
        f.seek(entry.offset)
        return f.readline()

    def close(self) -> None:
        for f in self._readers.values():
            f.close()
        self._readers.clear()

    def records(self) -> Iterator[dict]:
        """index.jsonl's records, one at a time, in order."""
        if self.path.exists():
            with open(self.path, "rb") as f:
                for raw in f:
                    if raw.endswith(b"\n") and raw.strip():
                        yield json.loads(raw)

    def merge(self) -> bool:
        """Fold the journals into index.jsonl (latest record per id, input order), atomically, then remove
        them. Returns whether index.jsonl changed (without records in journals, it is left alone)."""
        for stale in self.folder.glob(".index.*.tmp.jsonl"):  # a merge killed before its rename
            stale.unlink(missing_ok=True)
        journals = self.journals()
        if not any(path.stat().st_size for path in journals):
            for path in journals:
                path.unlink()
            return False
        order = sorted(self.scan(journals=True).items(), key=lambda kv: (kv[1].index, kv[0]))
        try:
            with output.atomic_path(self.path) as tmp, open(tmp, "wb") as w:
                for _, entry in order:
                    w.write(self._raw(entry))
        finally:
            self.close()
        for path in journals:
            path.unlink()
        return True
