"""Adversarial inputs: each class an adversarial run found (large inputs, bad numbers, bad files, wrong API
types, a damaged session database, kill / SIGTERM) ends in one clean line - or a clean result - and loses
nothing. Plus the newcomer's path: model folders from any folder, "not found" said before a planner loads,
-n N contact sheets with a seed and scores per image, chat quit/exit and undo without a second render.

The CLI runs in-process (the ``run_cli`` fixture) where it can (the tiny model stays loaded); signals and the
no-torch-before-checks guarantee use real subprocesses.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

import plan_and_render as par
from plan_and_render.app import api
from plan_and_render.app.session import MAX_EDIT_CHARS, Session
from plan_and_render.app.store import Store, StoreError
from plan_and_render.errors import PlanAndRenderError, UsageError
from plan_and_render.scene import MAX_PLAN_OBJECTS, ScenePlan

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "models" / "shapes-tiny")
PROMPT = "a red circle above a blue square"
FAST = ["--planner", "rules", "--model", TINY, "--steps", "1"]




def one_error(err: str) -> str:
    """stderr holds exactly one 'error: ' line (progress lines may come before it), no traceback, nothing
    'unexpected' - the mark of an exception nobody turned into a message."""
    assert "Traceback" not in err and "unexpected" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def only_error(err: str) -> str:
    """stderr is nothing but one 'error: ' line (the failure came before any work)."""
    line = one_error(err)
    assert [ln for ln in err.splitlines() if ln.strip()] == [line], err
    return line


def tiny_plan(width: int = 64, height: int = 64) -> ScenePlan:
    return par.plan(PROMPT, planner="rules", width=width, height=height)


# --------------------------------------------------------------------------
# large inputs: limits checked before the work starts
# --------------------------------------------------------------------------


def test_a_plan_file_of_600000_objects_is_refused_before_it_is_read(run_cli, tmp_path):
    obj = '{{"id": "o{}", "name": "cat", "phrase": "a cat", "box": [0.1, 0.1, 0.2, 0.2]}}'
    body = ", ".join(obj.format(i) for i in range(600_000))
    big = tmp_path / "big.json"
    big.write_text('{"prompt": "cats", "objects": [' + body + "]}")
    t0 = time.perf_counter()
    code, _, err = run_cli("--plan", str(big), "--dry-run", "--out", str(tmp_path / "run"))
    assert time.perf_counter() - t0 < 5
    assert code == 2 and "MB" in only_error(err) and not (tmp_path / "run").exists()


def test_a_plan_with_more_objects_than_a_plan_holds_is_refused_quickly():
    objects = [{"id": f"o{i}", "name": "cat", "phrase": "a cat", "box": [0.1, 0.1, 0.2, 0.2]} for i in range(10_000)]
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=f"at most {MAX_PLAN_OBJECTS}"):
        api.parse_plan({"prompt": "cats", "objects": objects})
    assert time.perf_counter() - t0 < 2


def test_a_huge_chat_edit_is_refused_before_it_is_parsed():
    s = Session("a cat to the left of a dog", planner="rules")
    t0 = time.perf_counter()
    result = s.edit("add a red cat " * 15_000)  # 210 kB: hung the parser before
    assert time.perf_counter() - t0 < 1
    assert not result.ok and f"limit is {MAX_EDIT_CHARS}" in result.error and s.turn == 0
    longest = ("move the cat a bit left and " * 40)[:MAX_EDIT_CHARS]
    t0 = time.perf_counter()
    s.edit(longest)
    assert time.perf_counter() - t0 < 3


def test_images_beyond_the_pixel_budget_are_refused_before_anything_loads(run_cli, tmp_path):
    plan = tiny_plan()
    with pytest.raises(UsageError, match="M pixels"):  # not "model not found": checked first
        par.render(plan, model=tmp_path / "no-model", width=4096, height=4096, num_images=16)
    code, _, err = run_cli(PROMPT, *FAST, "--width", "4096", "--height", "4096", "-n", "16",
                           "--out", str(tmp_path / "run"))
    assert code == 2 and "M pixels" in only_error(err) and not (tmp_path / "run").exists()


def test_a_render_whose_attention_maps_would_not_fit_is_refused_before_it_starts(monkeypatch):
    from plan_and_render.renderer import memory

    monkeypatch.setattr(memory, "free_bytes", lambda device: 8e9)  # a machine with 8 GB free
    with pytest.raises(UsageError, match=r"512x512 would need about 16\.1 GB .* 8\.0 GB free"):
        par.render(tiny_plan(512, 512), model=TINY, steps=1, progress=False)  # a 64 px model at 512 px
    assert par.render(tiny_plan(), model=TINY, steps=1, progress=False).images  # its own size fits
    assert Session(PROMPT, planner="rules", model=TINY).canvas.width == 64  # a session starts at the model's size


# --------------------------------------------------------------------------
# bad numbers: usage errors (exit 2), nothing written
# --------------------------------------------------------------------------


@pytest.mark.parametrize("options, says", [
    (["--guidance-scale", "nan"], "finite"),
    (["--guidance-scale", "inf"], "finite"),
    (["--seed", str(2**70)], "out of range"),
    (["--steps", "0"], "out of range"),
    (["--width", "100000"], "out of range"),
    (["--method-options", '{"refocus": {"loss_scale": "big"}}'], "must be float"),
    (["--method-options", '{"refocus": {"loss_scale": NaN}}'], "finite"),
    (["--method-options", '{"refocus": {"late_steps": "soon"}}'], "must be tuple"),
])
def test_bad_numbers_are_usage_errors_before_anything_is_written(run_cli, tmp_path, options, says):
    code, _, err = run_cli(PROMPT, *FAST, *options, "--out", str(tmp_path / "run"))
    assert code == 2 and says in only_error(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [["plan", "a cat", "-p", "rules", "--seed", str(2**70)],
                                  ["chat", "a cat", "-p", "rules", "--no-store", "--seed", str(2**70)]])
def test_seeds_out_of_range_are_usage_errors_in_every_command(run_cli, argv):
    code, _, err = run_cli(*argv)
    assert code == 2 and str(2**70) in only_error(err)


@pytest.mark.parametrize("settings", [{"steps": "10"}, {"seed": True}, {"guidance_scale": "7.5"},
                                      {"guidance_scale": math.nan}, {"num_images": 1.5}])
def test_render_settings_take_numbers_only(settings):
    with pytest.raises(UsageError):
        par.render(tiny_plan(), model=TINY, **settings)


# --------------------------------------------------------------------------
# bad files
# --------------------------------------------------------------------------


def _between_plan(tmp_path: Path) -> list[str]:
    plan = {"prompt": "a cat between two dogs", "canvas": {"width": 64, "height": 64},
            "objects": [{"id": i, "name": "x", "phrase": i} for i in ("cat", "dog")],
            "relations": [{"subject": "cat", "predicate": "between", "object": "dog"}]}
    (tmp_path / "p.json").write_text(json.dumps(plan))
    return ["--plan", str(tmp_path / "p.json"), "--model", TINY, "--steps", "1"]


def _not_gguf(tmp_path: Path) -> list[str]:
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return ["plan", "a cat", "-p", f"gguf:{tmp_path / 'passwd'}"]


def _out_is_a_file(tmp_path: Path) -> list[str]:
    (tmp_path / "notes.txt").write_text("mine")
    return [PROMPT, *FAST, "--out", str(tmp_path / "notes.txt")]


def _preview_is_a_folder(tmp_path: Path) -> list[str]:
    return ["plan", "a cat", "-p", "rules", "--preview", str(tmp_path)]


def _deep_json(tmp_path: Path) -> list[str]:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return ["--plan", str(tmp_path / "deep.json"), "--dry-run"]


def _not_a_database(tmp_path: Path) -> list[str]:
    (tmp_path / "notes.txt").write_text("mine")
    return ["sessions", "list", "--store", str(tmp_path / "notes.txt")]


def _empty_weights_file(tmp_path: Path) -> list[str]:
    (tmp_path / "empty.safetensors").write_bytes(b"")
    return [PROMPT, "--planner", "rules", "--model", str(tmp_path / "empty.safetensors"), "--width", "64",
            "--height", "64", "--steps", "1", "--out", str(tmp_path / "run")]


def _empty_weights_in_a_folder(tmp_path: Path) -> list[str]:
    import shutil

    shutil.copytree(TINY, tmp_path / "m")
    (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return [PROMPT, "--planner", "rules", "--model", str(tmp_path / "m"), "--steps", "1", "--out",
            str(tmp_path / "run")]


def _broken_model_index(tmp_path: Path) -> list[str]:
    import shutil

    shutil.copytree(TINY, tmp_path / "m")
    (tmp_path / "m" / "model_index.json").write_text("{half")
    return [PROMPT, "--planner", "rules", "--model", str(tmp_path / "m"), "--steps", "1", "--out",
            str(tmp_path / "run")]


def _cuda_without_cuda(tmp_path: Path) -> list[str]:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return [PROMPT, *FAST, "--device", "cuda", "--out", str(tmp_path / "run")]


@pytest.mark.parametrize("make, code, says", [
    (_between_plan, 2, "'between' needs a second reference"),
    (_not_gguf, 2, "is not a GGUF file"),
    (_out_is_a_file, 2, "is a file"),
    (_preview_is_a_folder, 2, "is a folder"),
    (_deep_json, 2, "nested too deeply"),
    (_not_a_database, 1, "not a session database"),
    (_empty_weights_file, 1, "is empty"),
    (_empty_weights_in_a_folder, 1, "incomplete pipeline folder"),
    (_broken_model_index, 1, "model_index.json is not valid"),
    (_cuda_without_cuda, 2, "CUDA is not available"),
])
def test_bad_files_are_one_line_and_nothing_of_the_user_is_overwritten(run_cli, tmp_path, make, code, says):
    argv = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".txt", "")}
    got, _, err = run_cli(*argv)
    assert got == code and says in one_error(err)
    assert all(p.read_bytes() == data for p, data in before.items())  # the user's files are untouched


def test_cuda_without_cuda_is_said_before_planning(run_cli, tmp_path):
    argv = _cuda_without_cuda(tmp_path)
    code, _, err = run_cli(*argv)
    assert code == 2 and "CUDA" in only_error(err) and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------
# wrong API types: the project's errors, checked before anything heavy loads
# --------------------------------------------------------------------------

BAD_CALLS = textwrap.dedent('''
    import json, sys
    import plan_and_render as par
    from plan_and_render import Session
    from plan_and_render.app import api
    from plan_and_render.errors import PlanAndRenderError

    plan = par.plan("a red circle above a blue square", planner="rules", width=64, height=64)
    calls = {
        "render(None)": lambda: par.render(None),
        "render('a cat')": lambda: par.render("a cat"),
        "render(steps='10')": lambda: par.render(plan, steps="10"),
        "render(width=100000)": lambda: par.render(plan, width=100000),
        "render(model=None)": lambda: par.render(plan, model=None),
        "render(callback=5)": lambda: par.render(plan, callback=5),
        "render(settings=5)": lambda: par.render(plan, settings=5),
        "plan(123)": lambda: par.plan(123),
        "plan(None)": lambda: par.plan(None),
        "plan(planner=5)": lambda: par.plan("a cat", planner=5),
        "plan(seed='x')": lambda: par.plan("a cat", seed="x"),
        "plan(canvas=5)": lambda: par.plan("a cat", canvas=5),
        "plan(canvas={'width': 1})": lambda: par.plan("a cat", canvas={"width": 1}),
        "check(None)": lambda: par.check(None),
        "check({})": lambda: par.check({}),
        "load_plan(None)": lambda: par.load_plan(None),
        "load_plan(5)": lambda: par.load_plan(5),
        "parse_plan(None)": lambda: par.parse_plan(None),
        "save_preview(None)": lambda: par.save_preview(None, "x.png"),
        "get_planner(5)": lambda: par.get_planner(5),
        "get_pipeline(None)": lambda: par.get_pipeline(None),
        "generate(5)": lambda: par.generate(5),
        "generate(plan=5)": lambda: par.generate(plan=5),
        "generate(out_dir=5)": lambda: par.generate("a cat", out_dir=5),
        "generate(on_event=5)": lambda: par.generate("a cat", on_event=5),
        "generate(planner_options=5)": lambda: par.generate("a cat", planner_options=5),
        "generate(dry_run='yes')": lambda: par.generate("a cat", dry_run="yes"),
        "Result.save(5)": lambda: api.Result(plan=plan).save(5),
        "Session(123)": lambda: Session(123),
        "Session(planner=5)": lambda: Session("a cat", planner=5),
        "Session(seed='x')": lambda: Session("a cat", seed="x"),
        "Session(canvas=5)": lambda: Session("a cat", canvas=5),
        "Session(store=5)": lambda: Session("a cat", store=5),
        "Session.resume(None)": lambda: Session.resume(None),
        "Session.resume(5)": lambda: Session.resume(5),
        "Session.edit(5)": lambda: Session(planner="rules").edit(5),
        "Session.undo(0)": lambda: Session(planner="rules").undo(0),
        "Session.undo('x')": lambda: Session(planner="rules").redo("x"),
    }
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = "returned"
        except PlanAndRenderError as e:
            out[name] = type(e).__name__ + ": " + e.message
        except BaseException as e:
            out[name] = "BARE " + type(e).__name__ + ": " + str(e)
    heavy = sorted(m for m in ("torch", "transformers", "diffusers") if m in sys.modules)
    print(json.dumps({"results": out, "heavy": heavy, "planners": sorted(k[0] for k in api._PLANNERS)}))
''')


def test_wrong_api_arguments_raise_the_projects_errors_before_anything_heavy_loads(tmp_path):
    proc = subprocess.run([sys.executable, "-c", BAD_CALLS], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    bare = {k: v for k, v in report["results"].items() if not v.split(":")[0].endswith("Error")}
    assert not bare, bare  # every wrong call is a PlanAndRenderError, never a bare exception or a return
    assert all("\n" not in v for v in report["results"].values())
    assert "empty" not in report["results"]["plan(123)"] and "str" in report["results"]["plan(123)"]
    assert report["heavy"] == [] and report["planners"] == ["rules"]  # no torch, no language model loaded
    assert not list(tmp_path.iterdir())  # and nothing was written


# --------------------------------------------------------------------------
# a damaged session database: one line, and nothing written into it
# --------------------------------------------------------------------------


def _damage(db: Path, seed: int) -> None:
    import random

    rng = random.Random(seed)
    data = bytearray(db.read_bytes())
    for i in range(4096, len(data), 7):  # garbage in every page after the header page
        data[i] = rng.randrange(256)
    db.write_bytes(bytes(data))


def test_a_damaged_session_store_is_one_line_and_never_written(run_cli, tmp_path):
    db = tmp_path / "sessions.db"
    sid = Session("a cat to the left of a dog", planner="rules", store=db).id
    for _ in range(3):
        Session.resume(sid, store=db).edit("move the cat a bit left")
    for p in tmp_path.glob("sessions.db-*"):  # what a clean close leaves: the database file alone
        p.unlink()
    _damage(db, seed=1)
    damaged = db.read_bytes()
    for argv in (["sessions", "list"], ["sessions", "show", sid], ["chat", "a bird", "-p", "rules", "--no-render"],
                 ["chat", "--session", sid, "--no-render"]):
        code, _, err = run_cli(*argv, "--store", str(db))
        assert code == 1 and "damaged" in only_error(err), argv
        assert db.read_bytes() == damaged, argv
    with pytest.raises(StoreError, match="damaged"):
        Store(db)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(PlanAndRenderError):
        Session("a cat", planner="rules", store=garbage)


# --------------------------------------------------------------------------
# kill / SIGTERM / Ctrl-C: real processes
# --------------------------------------------------------------------------


def _wait_for_status(meta: Path, status: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            if json.loads(meta.read_text())["status"] == status:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{meta} never reached status {status!r}")


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_render_stopped_by_a_signal_keeps_its_plan_and_leaves_no_old_image(run_cli, ctrl_c_child, tmp_path,
                                                                          sig, code, word):
    out = tmp_path / "run"
    first, _, err = run_cli("a green star to the left of a blue ring", *FAST, "--out", str(out))
    assert first == 0 and (out / "image.png").is_file()
    proc = subprocess.Popen([sys.executable, "-m", "plan_and_render", PROMPT, *FAST[:-1], "1000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_child,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for_status(out / "metadata.json", "rendering", proc)
    assert not (out / "image.png").exists()  # the earlier run's image went when this run took the folder
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert one_error(err) == f"error: {word}; kept plan.json, layout.png, metadata.json in {out}"
    assert json.loads((out / "metadata.json").read_text())["status"] == word
    assert ScenePlan.model_validate_json((out / "plan.json").read_text()).prompt == PROMPT
    assert sorted(p.name for p in out.iterdir()) == ["layout.png", "metadata.json", "plan.json"]  # no temp files


def test_a_chat_stopped_by_sigterm_keeps_every_turn(tmp_path):
    db = tmp_path / "s.db"
    proc = subprocess.Popen([sys.executable, "-m", "plan_and_render", "chat", "a cat to the left of a dog", "-p",
                             "rules", "--no-render", "--store", str(db)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("move the cat a bit left\n")
    proc.stdin.flush()
    end = time.monotonic() + 120
    while time.monotonic() < end and "moved cat-1" not in proc.stdout.readline():
        pass  # the chat reports the edit after it is committed, then waits for the next line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated; session" in one_error(err)
    assert Store(db).list_sessions()[0].turns == 2 and Store(db).integrity() == "ok"


# --------------------------------------------------------------------------
# output folders
# --------------------------------------------------------------------------


def test_a_reused_out_folder_holds_only_the_newest_run(run_cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_cli(PROMPT, *FAST, "-n", "3", "--out", str(out))[0] == 0
    assert {"image-1.png", "image-2.png", "image-3.png", "contact-sheet.png"} <= {p.name for p in out.iterdir()}
    assert run_cli(PROMPT, *FAST, "--out", str(out))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["image.png", "layout.png", "metadata.json", "notes.txt",
                                                     "plan.json"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["files"]["images"] == ["image.png"] and [i["file"] for i in meta["images"]] == ["image.png"]


def test_run_files_get_the_mode_a_plain_open_gives(run_cli, tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    assert run_cli(PROMPT, *FAST, "-n", "2", "--out", str(tmp_path / "run"))[0] == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # 0644 under the usual umask, never mkstemp's 0600


# --------------------------------------------------------------------------
# smaller items
# --------------------------------------------------------------------------


def test_terminal_escapes_never_reach_the_terminal_or_the_plan(run_cli):
    code, out, err = run_cli("plan", "a \x1b[31mred\x1b[0m cat\x1b]0;owned\x07 on a mat", "-p", "rules",
                             "--json")
    assert code == 0 and "\x1b" not in out + err
    plan = ScenePlan.model_validate_json(out)
    assert {o.name for o in plan.objects} == {"cat", "mat"} and "\x1b" not in plan.prompt
    s = Session("a cat", planner="rules")
    assert s.edit("make the cat \x1b[1mblack\x1b[0m").ok and s.plan.objects[0].attributes == ["black"]


def test_a_canvas_that_is_not_a_multiple_of_8_renders_with_a_warning(run_cli, tmp_path):
    plan = tiny_plan(100, 100)
    result = par.render(plan, model=TINY, steps=1, method="none", progress=False)
    assert result.images[0].size == (96, 96)
    assert any("100x100 is rendered at 96x96" in w for w in result.warnings)
    (tmp_path / "p.json").write_text(plan.to_json())
    code, _, err = run_cli("--plan", str(tmp_path / "p.json"), "--model", TINY, "--steps", "1",
                           "--out", str(tmp_path / "run"))
    assert code == 0 and "warning: the plan's canvas 100x100 is rendered at 96x96" in err


def test_chat_lines_that_cannot_be_edits_are_one_line_each_and_quit_leaves(tmp_path):
    db = tmp_path / "s.db"
    lines = [b"add forty cats", b"\xff\xfe not text", b"x" * (MAX_EDIT_CHARS + 1), b"/undo 0", b"/redo x",
             b"quit", b"add a dog"]
    proc = subprocess.run([sys.executable, "-m", "plan_and_render", "chat", "a cat", "-p", "rules", "--no-render",
                           "--store", str(db)], input=b"\n".join(lines) + b"\n", capture_output=True, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in err and "unexpected" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 5, err  # one line for each of the five bad lines
    assert "30" in errors[0]  # "add forty cats": the instance limit
    assert "UTF-8" in errors[1] and f"limit is {MAX_EDIT_CHARS}" in errors[2] and "/undo" in errors[3]
    (rec,) = Store(db).list_sessions()
    assert rec.turns == 1  # nothing but the first plan: bad lines, quit and what follows it are no turns
    for word in ("exit", "quit"):
        proc = subprocess.run([sys.executable, "-m", "plan_and_render", "chat", "a cat", "-p", "rules",
                               "--no-render", "--store", str(db)], input=f"{word}\n", capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "not understand" not in proc.stdout


# --------------------------------------------------------------------------
# the newcomer's path
# --------------------------------------------------------------------------


def test_a_model_folder_works_from_any_folder_and_sessions_keep_its_absolute_path(run_cli, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = os.path.relpath(TINY, elsewhere)
    code, _, err = run_cli(PROMPT, "--planner", "rules", "--model", relative, "--steps", "1", "--out", "run")
    assert code == 0, err
    assert json.loads((elsewhere / "run" / "metadata.json").read_text())["model"] == TINY
    s = Session(PROMPT, planner="rules", store=tmp_path / "s.db", model=relative, render_options={"steps": 1})
    assert Store(tmp_path / "s.db").get_session(s.id).model == TINY
    monkeypatch.chdir(tmp_path)  # resumed from another folder, the session still renders
    assert Session.resume(s.id, store=tmp_path / "s.db").render().images


def test_a_missing_model_says_not_found_before_a_planner_loads(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    api._PLANNERS.clear()
    t0 = time.perf_counter()
    code, _, err = run_cli(PROMPT, "--model", "models/shapes-tiny")  # the default planner: local
    assert time.perf_counter() - t0 < 10 and not api._PLANNERS
    line = only_error(err)
    assert code == 1 and "not found" in line and "HF_HUB_OFFLINE is set" in line and "cannot be reached" not in line
    assert TINY in line  # where the demo model really is
    assert not (tmp_path / "outputs").exists()


def test_several_images_get_a_contact_sheet_and_each_its_seed_and_scores(run_cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(PROMPT, *FAST, "-n", "3", "--seed", "7", "--out", str(out))
    assert code == 0, err
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["files"]["contact_sheet"] == "contact-sheet.png"
    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.width > 2 * 64 and sheet.height > 64
    assert [(i["file"], i["seed"]) for i in meta["images"]] == [("image-1.png", 7), ("image-2.png", 8),
                                                                ("image-3.png", 9)]
    for oid, mean in meta["scores"].items():
        assert mean == pytest.approx(sum(i["scores"][oid] for i in meta["images"]) / 3, abs=1e-3)
    assert "seed 8" in err  # the table shows each image's scores, headed by its seed


def test_image_k_of_a_batch_starts_from_the_noise_of_its_own_seed(tiny_pipe, two_plan):
    import numpy as np

    batch = tiny_pipe(two_plan, method="none", seed=3, steps=2, num_images=2, progress=False)
    alone = tiny_pipe(two_plan, method="none", seed=4, steps=2, progress=False)
    assert batch.seeds == [3, 4] and alone.seeds == [4]
    diff = np.abs(np.asarray(batch.images[1], dtype=int) - np.asarray(alone.images[0], dtype=int))
    assert diff.max() <= 1  # the same image, up to rounding of a batched convolution
    assert len(batch.image_scores) == 2 and set(batch.image_scores[0]) == set(batch.scores)
