"""Session: edits, clarifying questions, undo/redo, persistence and resume, rendering, the chat CLI."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from plan_and_render.app.session import Session
from plan_and_render.planner.backends.base import LLMPlanner
from plan_and_render.errors import LLMError
from plan_and_render.app.store import Store
from plan_and_render.scene import ScenePlan

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny models: a second thread only spins

ROOT = Path(__file__).resolve().parents[1]


def _plan() -> ScenePlan:
    return ScenePlan(prompt="a gray cat to the left of a blue vase", canvas={"width": 64, "height": 64}, objects=[
        dict(id="cat-1", name="cat", phrase="a gray cat", attributes=["gray"], box=(0.05, 0.40, 0.35, 0.80),
             group="cat"),
        dict(id="vase-1", name="vase", phrase="a blue vase", attributes=["blue"], box=(0.60, 0.35, 0.80, 0.80),
             group="vase"),
    ], relations=[dict(subject="cat-1", predicate="left_of", object="vase-1")])


def _box(s: Session, oid: str):
    return s.plan.object_by_id(oid).box


# --------------------------------------------------------------------------
# editing, questions, undo / redo (memory only)
# --------------------------------------------------------------------------


def test_prompt_session_plans_with_its_planner():
    s = Session("a red ball to the left of a green box", planner="rules")
    assert {o.name for o in s.plan.objects} == {"ball", "box"}
    assert [h.action for h in s.history] == ["plan"] and s.turn == 0 and not s.can_undo


def test_edit_applies_ops_and_records_a_turn():
    s = Session(plan=_plan(), planner="rules")
    before = _box(s, "vase-1")
    r = s.edit("move the cat a bit up")
    assert r.ok and r.turn == 1 and r.ops[0]["op"] == "move"
    assert _box(s, "cat-1")[1] == pytest.approx(0.35) and _box(s, "vase-1") == before
    assert "moved cat-1 up" in r.notes[0] and str(r) == "; ".join(r.notes)


def test_pronoun_follows_the_previous_turn():
    s = Session(plan=_plan(), planner="rules")
    s.edit("add a dog behind the vase")
    r = s.edit("make it bigger")
    assert r.ok and r.ops[0]["target"] == "dog-1"


def test_ambiguous_instruction_asks_and_changes_nothing():
    s = Session(plan=_plan(), planner="rules")
    before = s.plan
    r = s.edit("make it bigger")
    assert not r.ok and r.question.startswith("Which object do you mean by 'it'?")
    assert s.plan == before and s.history[-1].action == "clarify" and not s.can_undo
    # answering the question works
    assert s.edit("make the vase bigger").ok


def test_errors_do_not_add_turns():
    s = Session(plan=_plan(), planner="rules")
    r = s.edit("move the giraffe left")
    assert r.error.startswith("there is no 'giraffe'") and len(s.history) == 1
    assert s.edit("").error.startswith("the instruction is empty")
    assert "nothing to undo" in s.undo().error
    bad = s.edit("x", ops=[{"op": "move", "target": "cat-1"}])
    assert bad.error.startswith("invalid edit operations")


def test_undo_redo_walk_the_history():
    s = Session(plan=_plan(), planner="rules")
    p0 = s.plan
    s.edit("move the cat right a bit")
    p1 = s.plan
    s.edit("make the vase red")
    p2 = s.plan
    assert s.undo().ok and s.plan == p1
    assert s.undo().ok and s.plan == p0
    assert s.redo().ok and s.plan == p1
    assert s.edit("redo").ok and s.plan == p2  # the parsed word works like the method
    assert "nothing to redo" in s.redo().error
    s.edit("undo twice")
    assert s.plan == p0
    s.edit("remove the vase")  # a new edit after undo drops the redo branch
    assert not s.can_redo and s.plan.object_by_id("vase-1") is None
    assert s.undo().ok and s.plan == p0
    notes = s.history[-1].meta["notes"]
    assert notes == ["undo: turn 8 ('remove the vase')"]


class _LLM(LLMPlanner):
    """A language-model backend stand-in: answers with a fixed script, or fails like a timed-out model."""

    name = "fake-llm"

    def __init__(self, answer: dict | None):
        self.answer = answer

    def structured(self, messages, schema):
        if self.answer is None:
            raise LLMError("the model timed out")
        return schema.model_validate(self.answer)


def test_language_model_scripts_are_applied():
    s = Session(plan=_plan(), planner=_LLM({"ops": [{"op": "move", "target": "vase-1", "direction": "up",
                                                     "amount": "small"}]}))
    r = s.edit("lift the vase a little")
    assert r.ok and _box(s, "vase-1")[1] == pytest.approx(0.30) and s.history[-1].meta["parser"] == "fake-llm"


def test_failing_language_model_falls_back_to_rules():
    s = Session(plan=_plan(), planner=_LLM(None))
    r = s.edit("make the vase red")
    assert r.ok and s.plan.object_by_id("vase-1").phrase == "a red vase"
    assert s.history[-1].meta["parser"] == "rules (after: the model timed out)"


class _SmallLLM(_LLM):
    """A small model that asks for the rules first, as the ``local`` planner does."""

    name = "local"
    edit_rules_first = True


def test_small_local_model_answers_only_what_rules_do_not_understand():
    llm = _SmallLLM({"ops": [{"op": "change", "target": "cat-1", "add_attributes": ["sleepy"]}]})
    s = Session(plan=_plan(), planner=llm)
    assert s.edit("move the cat a bit up").ok and s.history[-1].meta["parser"] == "rules"
    r = s.edit("let the kitty doze off")  # the rules parser gives up; the model's script is used
    assert r.ok and s.history[-1].meta["parser"] == "local" and "sleepy" in s.plan.object_by_id("cat-1").attributes
    llm.answer = None  # the model fails too: the rules parser's own error stands
    assert s.edit("move the giraffe left").error.startswith("there is no 'giraffe'")


@pytest.mark.parametrize("mode", ["tools", "json", "json_schema", "md_json"])
def test_openai_backend_edits_through_instructor(monkeypatch, mode):
    """The hosted path end to end against the fake OpenAI server: schema sent, answer validated and applied."""
    from tools.fake_openai import FakeOpenAI, ok

    from plan_and_render.planner.backends.openai_backend import MODES

    if mode not in MODES:
        pytest.skip(f"mode {mode} not offered by the openai backend")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAI() as fake:
        fake.script = [ok({"ops": [{"op": "swap", "first": "cat-1", "second": "vase-1"}]})]
        s = Session(plan=_plan(), planner="openai:fake", base_url=fake.url, mode=mode)
        r = s.edit("let the cat and the vase trade spots")
        assert r.ok, r.error
        assert _box(s, "cat-1")[0] > 0.5 and s.history[-1].meta["parser"] == "openai:fake"
        sent = json.dumps(fake.requests[0].body)
        assert "cat-1: a gray cat" in sent and "let the cat and the vase trade spots" in sent


def test_export_writes_every_turn(tmp_path):
    s = Session(plan=_plan(), planner="rules")
    s.edit("make the cat black")
    s.edit("move it")  # a question is part of the conversation
    out = s.export(tmp_path / "deep" / "session.json")
    data = json.loads(out.read_text())
    assert [t["action"] for t in data["turns"]] == ["plan", "edit", "clarify"]
    assert data["turns"][1]["ops"][0] == {"op": "change", "target": "cat-1", "name": None,
                                          "add_attributes": ["black"], "remove_attributes": [], "phrase": None}
    assert data["plan"]["objects"][0]["phrase"] == "a black cat" and data["turns"][2]["question"]


# --------------------------------------------------------------------------
# persistence
# --------------------------------------------------------------------------


def test_resume_reproduces_state_and_stacks(tmp_path):
    db = tmp_path / "s.db"
    s = Session(plan=_plan(), planner="rules", store=db, seed=7)
    s.edit("add a dog behind the vase")
    s.edit("move the cat a bit left")
    s.edit("make the vase bigger")
    s.undo()
    r = Session.resume(s.id[:8], store=db)
    assert r.id == s.id and r.plan == s.plan and r.seed == 7 and r.planner == "rules"
    assert [h.turn for h in r.history] == [h.turn for h in s.history]
    assert r.redo().ok
    assert s.refresh().plan == r.plan and not s.can_redo  # s sees r's redo through the store
    r2 = Session.resume(s.id, store=db)
    assert r2.plan == r.plan
    assert r2.undo().ok and r2.undo().ok
    assert r2.plan.object_by_id("cat-1").box == _plan().object_by_id("cat-1").box
    assert [x.id for x in Session.list(db)] == [s.id]


def test_two_session_objects_on_one_store_build_on_each_other(tmp_path):
    db = tmp_path / "s.db"
    a = Session(plan=_plan(), planner="rules", store=db)
    b = Session.resume(a.id, store=Store(db))
    assert a.edit("move the cat right by 5%").ok
    assert b.edit("move the vase down by 5%").ok  # b is stale: it syncs and applies on top
    assert _box(b, "cat-1")[0] == pytest.approx(0.10) and _box(b, "vase-1")[1] == pytest.approx(0.40)
    assert a.edit("undo").ok  # a catches up first, then undoes b's edit
    assert _box(a, "cat-1")[0] == pytest.approx(0.10) and _box(a, "vase-1")[1] == pytest.approx(0.35)


def test_set_plan_is_an_undoable_layout_turn_and_refresh_sees_new_images(tmp_path):
    db = tmp_path / "s.db"
    a = Session(plan=_plan(), planner="rules", store=db)
    b = Session.resume(a.id, store=Store(db))
    moved = a.plan.model_copy(deep=True)
    moved.objects[0].box = (0.0, 0.0, 0.2, 0.2)
    result = a.set_plan(moved, "(mouse) moved cat-1", notes=["moved cat-1"], targets=["cat-1"])
    assert result.ok and result.turn == 1 and a.plan == moved
    assert a.edit("make it black").notes == ["changed cat-1: now 'a black cat'"]  # "it": the dragged object
    r = Session.resume(a.id, store=db)  # the replay puts the layout turn on the undo stack too
    assert [t.action for t in r.history] == ["plan", "layout", "edit"]
    assert r.undo().ok and r.plan == moved and r.undo().ok and r.plan == _plan()
    Store(db).add_images(a.id, 1, ["/tmp/turn1.png"])  # as a render in another thread records them
    assert b.refresh().history[1].images == ["/tmp/turn1.png"]


def test_resume_errors_are_clear(tmp_path):
    from plan_and_render.errors import UsageError

    with pytest.raises(UsageError, match="no session 'nope'"):
        Session.resume("nope", store=tmp_path / "s.db")
    with pytest.raises(UsageError, match="needs a store"):
        Session(session_id="x")


# --------------------------------------------------------------------------
# rendering: the session seed is reused
# --------------------------------------------------------------------------


SHAPES = str(ROOT / "models" / "shapes-tiny")


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, thread oversubscription makes a 1-step 64x64 render
    take ~8 s instead of ~0.3 s."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_render_reuses_seed_and_stores_images(tmp_path, one_thread):
    db = tmp_path / "s.db"
    s = Session(plan=_plan(), planner="rules", store=db, seed=5, model=SHAPES, method="none",
                render_options={"steps": 1})
    first = s.render()
    path = Path(first.config["paths"][0])
    assert path.exists() and path.parent == Store(db).images_dir(s.id)
    s.edit("make the cat black")
    changed = s.render()
    assert "reused_from" not in changed.config and changed.config["paths"] != first.config["paths"]
    s.undo()  # back to the first plan: its stored image is the render (no second render of one layout)
    again = s.render()
    assert first.config["seed"] == again.config["seed"] == 5 and again.config["reused_from"] == 0
    assert again.config["paths"] == first.config["paths"]
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    turns = Store(db).turns(s.id)
    assert [len(t.images) for t in turns] == [1, 1, 1]
    assert Session.resume(s.id, store=db).history[-1].images == [str(Path(again.config["paths"][0]))]
    assert Session.resume(s.id, store=db).render().config["reused_from"] == 0  # also after a resume


def test_render_of_empty_scene_is_refused():
    from plan_and_render.errors import UsageError

    with pytest.raises(UsageError, match="empty"):
        Session(planner="rules").render()


# --------------------------------------------------------------------------
# the chat command (piped stdin) and the sessions commands
# --------------------------------------------------------------------------


def _cli(args: list[str], stdin: str = "", monkeypatch=None, capsys=None) -> tuple[int, str, str]:
    from plan_and_render.app.cli import run

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = run(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_chat_piped_session(tmp_path, monkeypatch, capsys):
    db = tmp_path / "s.db"
    script = "\n".join(["add a dog behind the vase", "make it bigger", "move it", "move the giraffe left",
                        "/undo", "/show", "/history", "/plan", "/nonsense", "/quit", "ignored after quit"]) + "\n"
    code, out, err = _cli(["chat", "a gray cat to the left of a blue vase", "--planner", "rules", "--no-render",
                           "--store", str(db)], script, monkeypatch, capsys)
    assert code == 0, err
    assert "- added dog-1 (a dog) behind vase-1" in out and "- made dog-1 bigger" in out
    assert "? Where should the dog go" in out
    assert "error: there is no 'giraffe'" in err and "error: unknown command /nonsense" in err
    assert "Traceback" not in out + err
    assert '"objects": [' in out  # /plan printed JSON
    sid = Store(db).list_sessions()[0].id
    assert f"session {sid} saved" in out
    turns = Store(db).turns(sid)
    assert [t.action for t in turns] == ["plan", "edit", "edit", "clarify", "undo"]

    # sessions list / show / export / resume
    code, out, _ = _cli(["sessions", "list", "--store", str(db)], "", monkeypatch, capsys)
    assert code == 0 and sid in out
    code, out, _ = _cli(["sessions", "show", sid[:5], "--store", str(db)], "", monkeypatch, capsys)
    assert code == 0 and "make it bigger" in out and "dog-1" in out
    code, out, _ = _cli(["sessions", "export", sid, str(tmp_path / "out.json"), "--store", str(db)], "",
                        monkeypatch, capsys)
    assert code == 0 and json.loads((tmp_path / "out.json").read_text())["id"] == sid
    code, out, err = _cli(["sessions", "resume", sid, "--no-render", "--store", str(db)],
                          "make the cat black\n", monkeypatch, capsys)
    assert code == 0 and "a black cat" in out, err
    assert Session.resume(sid, store=db).plan.object_by_id("cat-1").phrase == "a black cat"
    code, out, err = _cli(["chat", "--session", sid, "--no-render", "--store", str(db)], "/redo\n", monkeypatch,
                          capsys)
    assert code == 0 and "error: nothing to redo" in err


@pytest.mark.parametrize("args,needle,code", [
    (["sessions", "show", "nope"], "no session store at", 2),
    (["chat", "--session", "nope", "--no-render"], "no session store at", 2),
    (["chat", "a cat", "--session", "x", "--no-render"], "either a PROMPT", 2),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, args, needle, code):
    got, out, err = _cli([*args, "--store", str(tmp_path / "none.db")], "", monkeypatch, capsys)
    assert got == code and needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_session_in_existing_store(tmp_path, monkeypatch, capsys):
    db = tmp_path / "s.db"
    Session(plan=_plan(), planner="rules", store=db)
    code, _, err = _cli(["sessions", "export", "zzz", str(tmp_path / "o.json"), "--store", str(db)], "",
                        monkeypatch, capsys)
    assert code == 2 and err.strip() == f"error: no session 'zzz' in {db} (see 'plan-and-render sessions list')"


def test_sessions_list_without_store(tmp_path, monkeypatch, capsys):
    code, out, _ = _cli(["sessions", "list", "--store", str(tmp_path / "none.db")], "", monkeypatch, capsys)
    assert code == 0 and "no sessions yet" in out and not (tmp_path / "none.db").exists()


def test_chat_renders_with_the_shipped_tiny_model(tmp_path, monkeypatch, capsys, one_thread):
    db = tmp_path / "s.db"
    code, out, err = _cli(["chat", "a red circle above a blue square", "--planner", "rules", "--store", str(db),
                           "--model", SHAPES, "--method", "none", "--steps", "1",
                           "--width", "64", "--height", "64"], "/quit\n", monkeypatch, capsys)
    assert code == 0, err
    sid = Store(db).list_sessions()[0].id
    images = Store(db).turns(sid)[0].images
    assert len(images) == 1 and f"rendered 1 image(s) with seed 0: {images[0]}" in out
    from PIL import Image

    assert Image.open(images[0]).size == (64, 64)


def test_chat_method_options_are_used_and_kept(tmp_path, monkeypatch, capsys, one_thread):
    db = tmp_path / "s.db"
    code, out, err = _cli(["chat", "a red circle above a blue square", "--planner", "rules", "--store", str(db),
                           "--model", SHAPES, "--method", "refocus", "--steps", "1", "--width", "64", "--height", "64",
                           "--method-options", '{"refocus": {"loss_scale": 5}}'], "/quit\n", monkeypatch, capsys)
    assert code == 0, err
    rec = Store(db).list_sessions()[0]
    assert Store(db).get_session(rec.id).meta["render_options"]["method_options"] == {"refocus": {"loss_scale": 5}}
    assert "rendered 1 image(s)" in out
    code, _, err = _cli(["chat", "a cat", "--planner", "rules", "--no-store", "--method-options", '{"refocus": {"lr": 1}}'],
                        "/quit\n", monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "lr" in err and "Traceback" not in err


def test_ctrl_c_keeps_the_session(tmp_path, ctrl_c_child):
    db = tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", "from plan_and_render.app.cli import main; main()", "chat",
                             "a cat left of a vase", "--planner", "rules", "--no-render", "--store", str(db)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=ctrl_c_child)
    try:
        proc.stdin.write("move the cat a bit up\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        seen = ""
        while "- moved cat-1 up" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "- moved cat-1 up" in seen, proc.stderr.read()
        proc.send_signal(signal.SIGINT)  # waiting for the next line, as a user pressing Ctrl-C
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted; session" in err and "Traceback" not in err
    st = Store(db)
    assert st.integrity() == "ok"
    sid = st.list_sessions()[0].id
    assert [t.action for t in st.turns(sid)] == ["plan", "edit"]
    assert Session.resume(sid, store=db).plan.object_by_id("cat-1") is not None
