"""The SQLite session store: schema, atomic files, crash safety, two writers on one session."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from plan_and_render.errors import UsageError
from plan_and_render.app.output import atomic_save_image, atomic_write
from plan_and_render.app.store import StaleSession, Store, StoreError, default_path

ROOT = Path(__file__).resolve().parents[1]


def _session(st: Store, **kw) -> str:
    return st.create_session(prompt=kw.get("prompt", "a cat"), planner="rules", model=None, method="refocus", seed=3,
                             canvas={"width": 64, "height": 64})


def test_turns_are_numbered_per_session_and_round_trip(tmp_path):
    st = Store(tmp_path / "s.db")
    a, b = _session(st), _session(st)
    assert st.append_turn(a, action="plan", instruction="a cat", ops=[], plan={"prompt": "a cat"}) == 0
    assert st.append_turn(b, action="plan", instruction="x", ops=[], plan={}) == 0
    assert st.append_turn(a, action="edit", instruction="move it", ops=[{"op": "move"}], plan={"prompt": "moved"},
                          meta={"notes": ["moved"]}, expected=1) == 1
    turns = st.turns(a)
    assert [t.turn for t in turns] == [0, 1] and turns[1].ops == [{"op": "move"}]
    assert turns[1].plan == {"prompt": "moved"} and turns[1].meta == {"notes": ["moved"]} and turns[1].state == 1
    rec = st.get_session(a)
    assert (rec.turns, rec.seed, rec.canvas) == (2, 3, {"width": 64, "height": 64})
    assert [r.id for r in st.list_sessions()] == [a, b] or [r.id for r in st.list_sessions()] == [b, a]
    assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stale_writer_is_refused_and_nothing_written(tmp_path):
    st = Store(tmp_path / "s.db")
    sid = _session(st)
    st.append_turn(sid, action="plan", instruction="p", ops=[], plan={})
    with pytest.raises(StaleSession) as info:
        st.append_turn(sid, action="edit", instruction="late", ops=[], plan={}, expected=0)
    assert info.value.latest == 0 and len(st.turns(sid)) == 1


def test_turn_numbers_are_unique_in_the_schema(tmp_path):
    st = Store(tmp_path / "s.db")
    sid = _session(st)
    st.append_turn(sid, action="plan", instruction="p", ops=[], plan={})
    with pytest.raises(sqlite3.IntegrityError):
        st.db.execute("INSERT INTO turns (session_id, turn, created, action, ops, plan, state) "
                      "VALUES (?, 0, 0, 'edit', '[]', '{}', 0)", (sid,))


def test_session_lookup_by_prefix(tmp_path):
    st = Store(tmp_path / "s.db")
    st.create_session(prompt="a", planner="rules", model=None, method=None, seed=0, canvas={}, session_id="abc123")
    st.create_session(prompt="b", planner="rules", model=None, method=None, seed=0, canvas={}, session_id="abd456")
    assert st.get_session("abc").id == "abc123"
    with pytest.raises(UsageError, match="ambiguous"):
        st.get_session("ab")
    with pytest.raises(UsageError, match="no session 'zzz'"):
        st.get_session("zzz")
    with pytest.raises(UsageError, match="already exists"):
        st.create_session(prompt="c", planner="rules", model=None, method=None, seed=0, canvas={},
                          session_id="abc123")


def test_default_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAN_AND_RENDER_HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / "sessions.db"
    st = Store()
    assert st.path == tmp_path / "home" / "sessions.db" and st.path.exists()


def test_unusable_store_path_is_one_line(tmp_path):
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open the session store") as info:
        Store(tmp_path / "dir.db")
    assert "\n" not in str(info.value)


def test_atomic_write_replaces_whole_files_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "plan.json"
    atomic_write(target, b"old")
    atomic_write(target, "new contents")
    assert target.read_bytes() == b"new contents"
    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["plan.json"]


def test_atomic_files_get_the_mode_open_would_give(tmp_path):
    """mkstemp creates 0600 files; a run's images and metadata must be readable by others (umask 022: 0644)."""
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", "{}")
        atomic_save_image(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644


def test_images_are_saved_then_recorded(tmp_path):
    st = Store(tmp_path / "s.db")
    sid = _session(st)
    turn = st.append_turn(sid, action="plan", instruction="p", ops=[], plan={})
    img = Image.new("RGB", (16, 8), (10, 200, 30))
    p1 = st.save_image(sid, turn, 0, img, seed=3)
    p2 = st.save_image(sid, turn, 0, img, seed=3)  # a second render of the same turn does not overwrite
    st.add_images(sid, turn, [str(p1), str(p2)])
    assert p1 != p2 and p1.parent == st.images_dir(sid)
    assert st.turns(sid)[0].images == [str(p1), str(p2)]
    assert Image.open(p1).size == (16, 8)
    with pytest.raises(UsageError, match="no turn 9"):
        st.add_images(sid, 9, [str(p1)])
    exported = st.export(sid[:6])
    assert exported["id"] == sid and exported["turns"][0]["images"] == [str(p1), str(p2)]


WRITER = textwrap.dedent("""
    import sys
    from PIL import Image
    from plan_and_render.app.store import Store
    st = Store(sys.argv[1]); sid = sys.argv[2]
    img = Image.new("RGB", (48, 48), (200, 10, 10))
    filler = ["x" * 64] * 3000  # ~200 kB a turn: the kill lands inside a write often
    i = 0
    while True:
        plan = {"prompt": f"turn {i}", "objects": [], "filler": filler}
        turn = st.append_turn(sid, action="edit", instruction=f"edit {i}", ops=[{"op": "move", "n": i}], plan=plan)
        path = st.save_image(sid, turn, 0, img)
        st.add_images(sid, turn, [str(path)])
        print(turn, flush=True)
        i += 1
""")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.031])
def test_killed_writer_leaves_a_consistent_store(tmp_path, delay):
    db = tmp_path / "s.db"
    st = Store(db)
    sid = _session(st)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), sid], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 6 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += 1
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen >= 6, proc.stderr.read()
    fresh = Store(db)
    assert fresh.integrity() == "ok"
    turns = fresh.turns(sid)
    assert len(turns) >= seen
    assert [t.turn for t in turns] == list(range(len(turns)))  # no gaps, no duplicates
    for t in turns:
        assert t.plan["prompt"] == f"turn {t.turn}" and len(t.plan["filler"]) == 3000  # every committed row whole
        assert t.ops == [{"op": "move", "n": t.turn}]
        for p in t.images:  # a recorded image is a complete file
            assert not Path(p).name.startswith(".")
            with Image.open(p) as im:
                im.load()
                assert im.size == (48, 48)
    # the store still takes writes after the crash
    assert fresh.append_turn(sid, action="edit", instruction="after", ops=[], plan={}) == len(turns)


CONCURRENT = textwrap.dedent("""
    import os, sys, time
    from plan_and_render.app.session import Session
    s = Session.resume(sys.argv[2], store=sys.argv[1])
    s.parse(sys.argv[3])  # warm up before the start line
    print("ready", flush=True)
    while not os.path.exists(sys.argv[1] + ".go"):
        time.sleep(0.01)
    for _ in range(int(sys.argv[4])):
        r = s.edit(sys.argv[3])
        assert r.ok, r
        time.sleep(0.01)
    print("done", flush=True)
""")


def test_two_processes_editing_one_session_lose_nothing(tmp_path):
    from plan_and_render.app.session import Session
    from plan_and_render.scene import ScenePlan

    db = tmp_path / "s.db"
    plan = ScenePlan(prompt="a cat and a vase", canvas={"width": 64, "height": 64}, objects=[
        dict(id="cat-1", name="cat", phrase="a cat", box=(0.05, 0.60, 0.25, 0.80), group="cat"),
        dict(id="vase-1", name="vase", phrase="a vase", box=(0.70, 0.05, 0.90, 0.25), group="vase")])
    s = Session(plan=plan, planner="rules", store=db)
    n = 12
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(db), s.id, text, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for text in ("move the cat right by 2%", "move the vase down by 3%")]
    for p in procs:  # both loaded, then both start at once
        assert p.stdout.readline().strip() == "ready", p.stderr.read()[-2000:]
    Path(str(db) + ".go").touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    fresh = Store(db)
    assert fresh.integrity() == "ok"
    turns = fresh.turns(s.id)
    assert [t.turn for t in turns] == list(range(1 + 2 * n))
    order = [t.instruction for t in turns[1:]]
    assert sum(a != b for a, b in zip(order, order[1:])) >= 2, order  # the writers really interleaved
    s2 = Session.resume(s.id, store=db)
    cat, vase = s2.plan.object_by_id("cat-1").box, s2.plan.object_by_id("vase-1").box
    assert cat[0] == pytest.approx(0.05 + n * 0.02, abs=1e-3)  # every move built on the newest state
    assert vase[1] == pytest.approx(0.05 + n * 0.03, abs=1e-3)
    json.dumps(fresh.export(s.id))
