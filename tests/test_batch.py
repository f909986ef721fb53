"""Batch rendering: the prompt file, the journaled index and its merge, a batch in-process (dry run, render,
resume, score), the commands' one-line errors, a run killed with SIGKILL and resumed, and two processes
under torchrun (gloo) - every prompt exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plan_and_render.app.batch_index import BatchIndex, fingerprint, read_items
from plan_and_render.app.cli import run
from plan_and_render.errors import UsageError

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "shapes-tiny")
PROMPTS = ["a red circle above a blue square", "a green star to the left of a yellow ring",
           "a cat left of a dog and the dog left of the cat",  # a conflict: an error record, not a crash
           "a purple triangle below an orange circle", "a blue ring to the right of a red square"]


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------
# the prompt file
# --------------------------------------------------------------------------


def test_read_items_text_and_jsonl(tmp_path):
    items = read_items(write(tmp_path / "p.txt", ["  a red   circle ", "", "a dog"]))
    assert [(i.index, i.id, i.prompt, i.request) for i in items] == [(0, "000001", "a red circle", {}),
                                                                    (1, "000002", "a dog", {})]
    items = read_items(write(tmp_path / "p.jsonl", [
        {"prompt": "a cat", "seed": 3, "num_images": 2, "method": "zest", "meta": {"type": "spatial"}},
        {"prompt": "a dog", "id": 17, "width": 128, "height": 64},
        {"prompt": "a cow"},
    ]))
    assert [i.id for i in items] == ["000001", "17", "000003"]
    assert items[0].request == {"seed": 3, "num_images": 2, "method": "zest"} and items[0].meta == {"type": "spatial"}
    assert items[1].request == {"width": 128, "height": 64}
    assert items[0].fingerprint == fingerprint("a  cat", {"seed": 3, "num_images": 2, "method": "zest"})
    assert items[0].fingerprint != fingerprint("a cat", {"seed": 4, "num_images": 2, "method": "zest"})


@pytest.mark.parametrize("lines,message", [
    (['{"prompt": "a cat"}', '{"prompt": "a dog", }'], r"p.jsonl line 2 is not valid JSON"),
    (['{"prompt": "a cat", "sed": 3}'], r"line 1: key 'sed' is unknown; a line may carry prompt, id, meta, method"),
    (['{"prompt": "a cat", "device": "cuda"}'], r"key 'device' is set for the whole batch"),
    (['{"prompt": "a cat", "width": 100}'], r"line 1: width 100 is not divisible by 8"),
    (['{"prompt": "a cat", "steps": 0}'], r"line 1: steps 0 is out of range"),
    (['{"seed": 1}'], r'line 1 has no "prompt" text'),
    (['', '{"prompt": "a", "id": "x"}', '{"prompt": "b", "id": "x"}'], r"line 3: id 'x' was already used on line 2"),
    (['', '  '], r"has no prompts"),
])
def test_read_items_bad_lines_are_one_clear_error(tmp_path, lines, message):
    with pytest.raises(UsageError, match=message):
        read_items(write(tmp_path / "p.jsonl", lines))


def test_missing_prompt_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_items(tmp_path / "nope.txt")


# --------------------------------------------------------------------------
# the index: journals, merge, crash remnants
# --------------------------------------------------------------------------


def rec(ident: str, index: int, status: str, **extra) -> dict:
    return {"id": ident, "index": index, "prompt": f"prompt {ident}", "request": {}, "status": status, **extra}


def test_merge_keeps_the_latest_record_per_id_in_input_order(tmp_path):
    write(tmp_path / "index.jsonl", [rec("b", 1, "planned"), rec("a", 0, "ok", note="old")])
    write(tmp_path / "index.rank0.jsonl", [rec("c", 2, "planned"), rec("c", 2, "ok"), rec("a", 0, "ok", note="new")])
    write(tmp_path / "index.rank1.jsonl", [rec("b", 1, "error", error={"stage": "render"})])
    (tmp_path / "index.rank1.jsonl").open("a").write('{"id": "d", "index": 3, "pro')  # cut by a kill
    index = BatchIndex(tmp_path)
    assert index.merge() is True
    got = records(tmp_path)
    assert [(r["id"], r["status"]) for r in got] == [("a", "ok"), ("b", "error"), ("c", "ok")]
    assert got[0]["note"] == "new" and not index.journals()
    (tmp_path / "index.rank2.jsonl").write_text("")  # a process that had nothing to do
    assert index.merge() is False and records(tmp_path) == got and not index.journals()  # nothing to fold
    entries = index.scan()
    assert entries["b"].stage == "render" and entries["c"].status == "ok"


def test_merge_after_a_crash_between_rename_and_cleanup_has_no_duplicates(tmp_path):
    lines = [rec("a", 0, "ok"), rec("b", 1, "ok")]
    write(tmp_path / "index.jsonl", lines)
    write(tmp_path / "index.rank0.jsonl", lines)  # already folded in, not yet removed
    (tmp_path / ".index.x1.tmp.jsonl").write_text("half a merge")
    BatchIndex(tmp_path).merge()
    assert records(tmp_path) == lines and sorted(p.name for p in tmp_path.iterdir()) == ["index.jsonl"]


def test_a_broken_line_inside_the_index_is_one_clear_error(tmp_path):
    (tmp_path / "index.jsonl").write_text(json.dumps(rec("a", 0, "ok")) + "\nnot json\n" + json.dumps(rec("b", 1, "ok")) + "\n")
    with pytest.raises(UsageError, match="index.jsonl line 2 is not a batch record"):
        BatchIndex(tmp_path).scan()


# --------------------------------------------------------------------------
# a batch, in-process (the pipeline is loaded once for the module)
# --------------------------------------------------------------------------


def test_dry_run_then_render_then_resume_then_score(tmp_path):
    from plan_and_render.app.batch_render import run_batch, score_batch

    prompts = write(tmp_path / "p.jsonl", [{"prompt": PROMPTS[0]}, {"prompt": PROMPTS[2]},
                                           {"prompt": PROMPTS[3], "seed": 5, "num_images": 2}])
    out = tmp_path / "batch"
    dry = run_batch(prompts, out, planner="rules", model=MODEL, steps=2, dry_run=True)
    assert (dry.planned, dry.rendered, dry.errors) == (2, 0, 1)
    assert [r["status"] for r in records(out)] == ["planned", "error", "planned"] and not (out / "runs").exists()
    assert records(out)[1]["error"]["stage"] == "plan" and records(out)[1]["error"]["type"] == "conflict"

    full = run_batch(prompts, out, planner="rules", model=MODEL, steps=2)
    assert (full.done_before, full.planned, full.rendered) == (1, 0, 2)  # the plans of the dry run are reused
    got = records(out)
    assert [r["status"] for r in got] == ["ok", "error", "ok"]
    assert got[2]["seed"] == 5 and got[2]["settings"]["num_images"] == 2 and len(got[2]["images"]) == 2
    for r in (got[0], got[2]):
        folder = out / r["dir"]
        assert {"plan.json", "layout.png", "metadata.json", "sheet.png"} <= {p.name for p in folder.iterdir()}
        assert all((out / p).is_file() for p in r["images"]) and (out / r["sheet"]).is_file()
        assert json.loads((folder / "plan.json").read_text())["objects"] == r["plan"]["objects"]
        assert r["timings"]["plan_s"] >= 0 and r["timings"]["render_s"] > 0
    summary = (out / "summary.html").read_text()
    assert f'src="{got[0]["sheet"]}"' in summary and "conflict" in summary

    again = run_batch(prompts, out, planner="rules", model=MODEL, steps=2)
    assert (again.done_before, again.planned, again.rendered) == (3, 0, 0) and records(out) == got

    scored = score_batch(out, "shapes")
    assert scored.scored == 2 and not (out / "index.rank0.jsonl").exists()
    got = records(out)
    assert got[2]["scores"]["detector"] == "shapes" and len(got[2]["scores"]["images"]) == 2
    agg = json.loads((out / "scores.json").read_text())["detectors"]["shapes"]
    assert (agg["prompts"], agg["images"]) == (2, 3)
    assert score_batch(out, "shapes").scored == 0  # already scored by it
    assert score_batch(out, "shapes", force=True).scored == 2


def test_changed_prompt_under_the_same_id_is_refused(tmp_path):
    from plan_and_render.app.batch_render import run_batch

    out = tmp_path / "batch"
    run_batch(write(tmp_path / "p.txt", [PROMPTS[0]]), out, planner="rules", model=MODEL, dry_run=True)
    with pytest.raises(UsageError, match="made from another prompt"):
        run_batch(write(tmp_path / "p.txt", [PROMPTS[1]]), out, planner="rules", model=MODEL, dry_run=True)


def test_commands_fail_with_one_line(tmp_path, capsys):
    bad = write(tmp_path / "p.jsonl", ['{"prompt": "a cat", "colour": "red"}'])
    cases = [
        (["batch", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")], "does not exist"),
        (["batch", str(bad), "--out", str(tmp_path / "o")], "key 'colour' is unknown"),
        (["batch", str(bad), "--out", str(tmp_path / "o"), "--score", "yolo"], "unknown detector 'yolo'"),
        (["batch", str(bad), "--out", str(tmp_path / "o"), "--steps", "0"], "--steps 0 is out of range"),
        (["batch", str(bad)], "Missing option '--out'"),
        (["score", str(tmp_path)], "is not a batch folder"),
    ]
    for argv, words in cases:
        assert run(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], (argv, err)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------
# real processes: SIGKILL mid-run, then resume; two processes under torchrun
# --------------------------------------------------------------------------


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_resume_after_kill_9_loses_only_the_image_in_flight(tmp_path):
    from plan_and_render.app.batch_render import run_batch

    prompts = write(tmp_path / "p.txt", [f"a red circle above a blue square number {k}" for k in range(8)])
    out = tmp_path / "batch"
    proc = subprocess.Popen([sys.executable, "-m", "plan_and_render", "batch", str(prompts), "--out", str(out),
                             "--planner", "rules", "--model", MODEL, "--steps", "2"], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = out / "index.rank0.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b'"status":"ok"') >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "index.jsonl").exists()  # killed before any merge: only the journal
    data = journal.read_bytes()
    lines = [json.loads(x) for x in data.split(b"\n")[:-1]]  # whole lines; a cut last line is left out
    finished = {r["id"]: (out / r["images"][0]).stat().st_mtime_ns for r in lines if r["status"] == "ok"}
    assert len(finished) >= 2 and len([r for r in lines if r["status"] == "planned"]) == 8

    report = run_batch(prompts, out, planner="rules", model=MODEL, steps=2)
    assert report.rendered == 8 - len(finished)  # what was done stays done
    got = records(out)
    assert [r["id"] for r in got] == [f"{k:06d}" for k in range(1, 9)] and {r["status"] for r in got} == {"ok"}
    assert all((out / got[int(i) - 1]["images"][0]).stat().st_mtime_ns == t for i, t in finished.items())
    assert not journal.exists()


def test_two_processes_under_torchrun_render_every_prompt_exactly_once(tmp_path):
    prompts = write(tmp_path / "p.txt", PROMPTS)
    out = tmp_path / "batch"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "plan_and_render", "batch", str(prompts), "--out", str(out), "--planner", "rules", "--model", MODEL,
           "--steps", "2"]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = records(out)
    assert [r["id"] for r in got] == [f"{k:06d}" for k in range(1, 6)]
    assert [r["status"] for r in got] == ["ok", "ok", "error", "ok", "ok"]
    assert [r["rank"] for r in got] == [0, 0, 0, 1, 1]  # contiguous shares: 3 and 2
    assert sorted(p.name for p in out.iterdir()) == ["index.jsonl", "runs", "summary.html"]
    assert len(list((out / "runs").glob("*/image.png"))) == 4
    assert "5 prompt(s), 1 error, 4 ok; this run planned 4, rendered 4" in done.stderr
    assert done.stdout.strip() == str(out)  # the folder, printed once (by the main process)
