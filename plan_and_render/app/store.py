"""Chat sessions on disk: one SQLite file (stdlib ``sqlite3``) plus an image folder.

One row per turn: the instruction, the operations (JSON), the resulting plan
(JSON), image paths, a timestamp. Why it survives crashes and sharing:

* WAL journal, ``synchronous=FULL`` and a busy timeout: a killed process loses
  at most the turn it was writing, and readers never block the writer.
* Each turn is one ``BEGIN IMMEDIATE`` transaction that takes the write lock
  *before* reading the next turn number, and ``(session_id, turn)`` is the
  primary key, so two processes appending to one session serialise instead of
  overwriting each other. A writer that expected a different turn number gets
  ``StaleSession`` and re-reads (the Session re-applies its edit on top).
* Image files are written to a temporary name, fsynced and ``os.replace``d into
  place before the row that names them commits, so a committed row never
  points at a half-written file.

Location: ``--store PATH`` / ``Store(path)``, else ``$PLAN_AND_RENDER_HOME/sessions.db``,
else ``~/.local/share/plan-and-render/sessions.db``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PlanAndRenderError, UsageError

from .output import atomic_save_image

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id        TEXT PRIMARY KEY,
    created   REAL NOT NULL,
    updated   REAL NOT NULL,
    prompt    TEXT,
    planner   TEXT NOT NULL,
    model     TEXT,
    method    TEXT,
    seed      INTEGER NOT NULL,
    canvas    TEXT NOT NULL,
    meta      TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS turns (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn        INTEGER NOT NULL,
    created     REAL NOT NULL,
    action      TEXT NOT NULL,
    instruction TEXT,
    ops         TEXT NOT NULL,
    plan        TEXT NOT NULL,
    state       INTEGER NOT NULL,
    images      TEXT NOT NULL DEFAULT '[]',
    meta        TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (session_id, turn)
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated);
"""


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


class StoreError(PlanAndRenderError):
    """The session store cannot be opened, read or written."""

    type = "store"


class StaleSession(Exception):
    """Another writer appended a turn first; ``latest`` is the newest turn number now."""

    def __init__(self, latest: int):
        super().__init__(f"session advanced to turn {latest}")
        self.latest = latest


def default_home() -> Path:
    env = os.environ.get("PLAN_AND_RENDER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "plan-and-render"


def default_path() -> Path:
    return default_home() / "sessions.db"


@dataclass
class SessionRecord:
    id: str
    created: float
    updated: float
    prompt: str | None
    planner: str
    model: str | None
    method: str | None
    seed: int
    canvas: dict
    meta: dict = field(default_factory=dict)
    turns: int = 0


@dataclass
class TurnRecord:
    session_id: str
    turn: int
    created: float
    action: str  # start | plan | edit | undo | redo | clarify
    instruction: str | None
    ops: list[dict]
    plan: dict
    state: int  # the turn whose plan is current after this one
    images: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"turn": self.turn, "created": iso(self.created), "action": self.action,
                "instruction": self.instruction, "ops": self.ops, "state": self.state, "images": self.images,
                **{k: v for k, v in self.meta.items()}, "plan": self.plan}


def _damaged(path: Path, why: object) -> str | None:
    """The message for a damaged database file (None when ``why`` is another kind of failure)."""
    text = str(why)
    if not any(w in text for w in ("malformed", "not a database", "corrupt", "*** in database")):
        return None
    return (f"the session store {path} is damaged ({' '.join(text.split())[:120]}); nothing was written to it: move it "
            "away (or restore a backup) and start again, or give another --store")


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Store:
    """A session database. Cheap to open; one connection per Store object (one thread)."""

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 30.0):
        self.path = Path(path).expanduser() if path else default_path()
        self.timeout = timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check_sqlite_file()
            self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._check_intact()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            with self._write():
                for statement in filter(str.strip, SCHEMA.split(";")):
                    self.db.execute(statement)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(_damaged(self.path, exc) or f"cannot open the session store {self.path}: {exc}") from None

    def _check_sqlite_file(self) -> None:
        """A file that exists must already be an SQLite database: SQLite would take a short text file for an
        empty database and write its tables over it."""
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                    raise StoreError(f"{self.path} is not a session database (not an SQLite file); nothing was "
                                     "written to it: give another --store")

    def _check_intact(self) -> None:
        """Refuse a damaged database before anything is read from or written into it (a new session
        written into a corrupt file could be lost with it). ``quick_check`` reads every page once."""
        verdict = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            self.db.close()
            raise StoreError(_damaged(self.path, verdict))

    @contextmanager
    def _reading(self):
        """Reads that meet a damaged page (or a vanished file) are one StoreError line."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(_damaged(self.path, exc) or f"cannot read the session store {self.path}: {exc}") from None

    # -- plumbing ---------------------------------------------------------

    def _write(self):
        """``with self._write():`` = one BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        store = self

        class _Tx:
            def __enter__(self_inner):
                store.db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                store.db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    def close(self) -> None:
        self.db.close()

    @property
    def images_root(self) -> Path:
        return self.path.parent / "images"

    def images_dir(self, session_id: str) -> Path:
        return self.images_root / session_id

    # -- sessions ----------------------------------------------------------

    def create_session(self, *, prompt: str | None, planner: str, model: str | None, method: str | None,
                       seed: int, canvas: dict, meta: dict | None = None, session_id: str | None = None,
                       first: dict | None = None) -> str:
        """A new session; ``first`` (action, instruction, ops, plan, meta) is its turn 0, in the same transaction,
        so a crash never leaves a session without its first plan."""
        sid = session_id or uuid.uuid4().hex[:12]
        now = time.time()
        try:
            with self._write():
                self.db.execute(
                    "INSERT INTO sessions (id, created, updated, prompt, planner, model, method, seed, canvas, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sid, now, now, prompt, planner, model, method, int(seed), json.dumps(canvas),
                     json.dumps(meta or {})))
                if first is not None:
                    self.db.execute(
                        "INSERT INTO turns (session_id, turn, created, action, instruction, ops, plan, state, meta) "
                        "VALUES (?, 0, ?, ?, ?, ?, ?, 0, ?)",
                        (sid, now, first["action"], first.get("instruction"), json.dumps(first.get("ops", [])),
                         json.dumps(first["plan"]), json.dumps(first.get("meta", {}))))
        except sqlite3.IntegrityError:
            raise UsageError(f"a session with id {sid!r} already exists") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the session store {self.path}: {exc}") from None
        return sid

    def _session(self, row) -> SessionRecord:
        return SessionRecord(id=row[0], created=row[1], updated=row[2], prompt=row[3], planner=row[4], model=row[5],
                             method=row[6], seed=row[7], canvas=json.loads(row[8]), meta=json.loads(row[9]),
                             turns=row[10])

    _SELECT = ("SELECT s.id, s.created, s.updated, s.prompt, s.planner, s.model, s.method, s.seed, s.canvas, s.meta, "
               "(SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id) FROM sessions s")

    def get_session(self, ref: str) -> SessionRecord:
        """A session by id or unique id prefix (like git); UsageError if none or several match."""
        ref = (ref or "").strip()
        if not ref:
            raise UsageError("give a session id (see 'plan-and-render sessions list')")
        with self._reading():
            rows = self.db.execute(self._SELECT + " WHERE s.id = ?", (ref,)).fetchall()
            if not rows:
                like = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                rows = self.db.execute(self._SELECT + " WHERE s.id LIKE ? ESCAPE '\\'", (like,)).fetchall()
        if not rows:
            raise UsageError(f"no session {ref!r} in {self.path} (see 'plan-and-render sessions list')")
        if len(rows) > 1:
            raise UsageError(f"session id {ref!r} is ambiguous: {', '.join(r[0] for r in rows[:5])}")
        return self._session(rows[0])

    def list_sessions(self, limit: int | None = None) -> list[SessionRecord]:
        sql = self._SELECT + " ORDER BY s.updated DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with self._reading():
            return [self._session(r) for r in self.db.execute(sql).fetchall()]

    # -- turns -------------------------------------------------------------

    def append_turn(self, session_id: str, *, action: str, instruction: str | None, ops: list[dict], plan: dict,
                    state: int | None = None, images: list[str] | None = None, meta: dict | None = None,
                    expected: int | None = None) -> int:
        """Commit the next turn and return its number.

        ``expected``: the turn number the caller believes comes next; if another
        writer got there first, nothing is written and ``StaleSession`` is raised.
        ``state`` defaults to the new turn itself.
        """
        payload = (json.dumps(ops), json.dumps(plan), json.dumps(images or []), json.dumps(meta or {}))
        try:
            with self._write():
                (last,) = self.db.execute("SELECT COALESCE(MAX(turn), -1) FROM turns WHERE session_id = ?",
                                          (session_id,)).fetchone()
                turn = last + 1
                if expected is not None and expected != turn:
                    raise StaleSession(last)
                now = time.time()
                self.db.execute(
                    "INSERT INTO turns (session_id, turn, created, action, instruction, ops, plan, state, images, "
                    "meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (session_id, turn, now, action, instruction, payload[0], payload[1],
                     turn if state is None else state, payload[2], payload[3]))
                self.db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the session store {self.path}: {exc}") from None
        return turn

    def add_images(self, session_id: str, turn: int, paths: list[str], render: dict | None = None) -> None:
        """Record image files (already written) on a turn, and ``render`` (what made them) in the list
        ``renders`` of the turn's meta - in one transaction, so concurrent renders of a turn all stay."""
        try:
            with self._write():
                row = self.db.execute("SELECT images, meta FROM turns WHERE session_id = ? AND turn = ?",
                                      (session_id, turn)).fetchone()
                if row is None:
                    raise UsageError(f"session {session_id} has no turn {turn}")
                images = json.loads(row[0]) + [str(p) for p in paths]
                merged = json.loads(row[1])
                if render is not None:
                    merged.setdefault("renders", []).append(render)
                self.db.execute("UPDATE turns SET images = ?, meta = ? WHERE session_id = ? AND turn = ?",
                                (json.dumps(images), json.dumps(merged), session_id, turn))
                self.db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time(), session_id))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the session store {self.path}: {exc}") from None

    def turns(self, session_id: str, after: int = -1) -> list[TurnRecord]:
        with self._reading():
            rows = self.db.execute(
                "SELECT session_id, turn, created, action, instruction, ops, plan, state, images, meta FROM turns "
                "WHERE session_id = ? AND turn > ? ORDER BY turn", (session_id, after)).fetchall()
        return [TurnRecord(session_id=r[0], turn=r[1], created=r[2], action=r[3], instruction=r[4],
                           ops=json.loads(r[5]), plan=json.loads(r[6]), state=r[7], images=json.loads(r[8]),
                           meta=json.loads(r[9])) for r in rows]

    def images(self, session_id: str) -> dict[int, list[str]]:
        """Turn -> its image paths: the one column that changes after a turn is committed (``add_images``)."""
        with self._reading():
            rows = self.db.execute("SELECT turn, images FROM turns WHERE session_id = ?", (session_id,)).fetchall()
        return {turn: json.loads(images) for turn, images in rows}

    def save_image(self, session_id: str, turn: int, index: int, image, seed: int | None = None) -> Path:
        """Write one PIL image atomically under the session's image folder."""
        stamp = uuid.uuid4().hex[:6]  # two renders of one turn never collide
        name = f"turn{turn:04d}-{index}" + (f"-seed{seed}" if seed is not None else "") + f"-{stamp}.png"
        return atomic_save_image(image, self.images_dir(session_id) / name)

    # -- export ------------------------------------------------------------

    def export(self, session_id: str) -> dict:
        rec = self.get_session(session_id)
        turns = self.turns(rec.id)
        current = turns[-1].state if turns else None
        plan = next((t.plan for t in turns if t.turn == current), None)
        return {
            "id": rec.id, "created": iso(rec.created), "updated": iso(rec.updated), "prompt": rec.prompt,
            "planner": rec.planner, "model": rec.model, "method": rec.method, "seed": rec.seed,
            "canvas": rec.canvas, "meta": rec.meta, "current_turn": current, "plan": plan,
            "turns": [t.to_dict() for t in turns],
        }

    def integrity(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]
