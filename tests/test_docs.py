"""The docs check: every shell command in README.md and docs/*.md runs, and the benchmark tables are the
ones the committed results give.

Each page's ```bash blocks run in order, in one fresh copy of the repository (outputs land in the copy;
a block may use a file an earlier block of the page wrote), from its root, with this checkout's
``plan-and-render`` and ``python3`` first on PATH, offline, each with a time limit. A block preceded by
``<!-- docs-check: skip (why) -->`` is not run; one preceded by ``<!-- docs-check: slow -->`` runs, and
makes its page's test ``slow``; one preceded by ``<!-- docs-check: bench -->`` reads the public benchmark
data (``../shared/bench`` or ``$PLAN_AND_RENDER_BENCH``) and is left out, saying so, where that is absent. The README's Python example runs too. docs/development.md describes
the convention for everyone who writes docs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.bench_data import BENCH_ENV, bench_dir

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK_TIMEOUT_S = 300
README_MAX_LINES = 300

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<lang>[\w+-]*)[ \t]*$")
SKIP = re.compile(r"^<!--\s*docs-check:\s*skip\s*\((?P<why>[^)]*)\)\s*-->$")
SLOW = re.compile(r"^<!--\s*docs-check:\s*slow\s*-->$")
BENCH = re.compile(r"^<!--\s*docs-check:\s*bench\s*-->$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None  # the reason given, when marked skip
    slow: bool
    bench: bool = False  # reads the shared benchmark data

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(text: str, page: Path = ROOT / "README.md") -> list[Block]:
    """The fenced code blocks of a Markdown text, each with the docs-check marker on the line before it."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == m.group("ticks")), len(lines))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.match(before)
        indent = len(m.group("indent"))
        code = "\n".join(ln[indent:] for ln in lines[i + 1:end]) + "\n"
        out.append(Block(page, i + 1, m.group("lang"), code, skip.group("why").strip() if skip else None,
                         bool(SLOW.match(before)), bool(BENCH.match(before))))
        i = end + 1
    return out


def prose(text: str) -> str:
    """``text`` without the contents of its code blocks (an example marker inside one is not a marker)."""
    lines = text.splitlines()
    inside = set()
    for b in blocks(text):
        inside.update(range(b.line, b.line + len(b.code.splitlines()) + 1))
    return "\n".join(ln for k, ln in enumerate(lines, 1) if k not in inside)


def page_blocks(page: Path, lang: str = "bash") -> list[Block]:
    return [b for b in blocks(page.read_text(), page) if b.lang == lang]


def _page_param(page: Path):
    marks = [pytest.mark.slow] if any(b.slow for b in page_blocks(page)) else []
    return pytest.param(page, marks=marks, id=str(page.relative_to(ROOT)))


def repository_copy(dest: Path) -> Path:
    """The files git knows (tracked, and new ones it does not ignore) copied to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True)
    if listed.returncode:
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "outputs", "__pycache__"))
        return dest
    for name in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def docs_env(home: Path) -> dict[str, str]:
    """This checkout's tools first on PATH; offline; state (sessions, caches) inside the test's folder; the
    benchmark data found where the checkout finds it (the copy has no ``../shared/bench`` beside it)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "PLAN_AND_RENDER_HOME": str(home / "home"),
            "PLAN_AND_RENDER_CACHE": str(home / "cache"), "PYTHONDONTWRITEBYTECODE": "1",
            BENCH_ENV: str(bench_dir())}


# --------------------------------------------------------------------------
# the convention itself
# --------------------------------------------------------------------------


def test_blocks_and_their_markers_are_read_as_documented():
    text = ("Intro\n\n<!-- docs-check: skip (needs a GPU) -->\n```bash\nnvidia-smi\n```\n\n"
            "<!-- docs-check: slow -->\n\n```bash\necho slow\n```\n"
            "<!-- docs-check: bench -->\n```bash\necho bench\n```\n"
            "- a list item:\n\n  ```bash\n  echo indented\n  ```\n"
            "```text\n$ not run\n```\n````markdown\n```bash\nnested\n```\n````\n")
    got = [(b.lang, b.code, b.skip, b.slow) for b in blocks(text)]
    assert got == [("bash", "nvidia-smi\n", "needs a GPU", False), ("bash", "echo slow\n", None, True),
                   ("bash", "echo bench\n", None, False),
                   ("bash", "echo indented\n", None, False), ("text", "$ not run\n", None, False),
                   ("markdown", "```bash\nnested\n```\n", None, False)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_skipped_block_says_why(page):
    for b in page_blocks(page):
        assert b.skip is None or len(b.skip) >= 5, f"{b.where}: docs-check: skip needs a reason"
    text = page.read_text()
    markers = len(re.findall(r"^<!--\s*docs-check:.*-->$", prose(text), re.M))
    marked = sum(1 for b in blocks(text, page) if b.skip is not None or b.slow or b.bench)
    assert markers == marked, f"{page.name}: a docs-check marker that is not right before a code block"


# --------------------------------------------------------------------------
# the commands run
# --------------------------------------------------------------------------


@pytest.mark.parametrize("page", [_page_param(p) for p in PAGES if any(b.skip is None for b in page_blocks(p))])
def test_the_commands_of_each_page_run(page, tmp_path):
    repo = repository_copy(tmp_path / "repo")
    env = docs_env(tmp_path)
    for b in page_blocks(page):
        if b.skip is not None:
            continue
        if b.bench and not bench_dir().is_dir():
            warnings.warn(f"{b.where}: not run: the benchmark data {bench_dir()} is absent")
            continue
        try:
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b.code], cwd=repo, env=env,
                                  capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{b.where}: still running after {BLOCK_TIMEOUT_S} s; mark it <!-- docs-check: skip (why) -->")
        assert proc.returncode == 0, \
            f"{b.where} failed ({proc.returncode}):\n{b.code}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, f"{b.where}:\n{proc.stderr[-3000:]}"


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path):
    (example,) = page_blocks(ROOT / "README.md", "python")
    repo = repository_copy(tmp_path / "repo")
    proc = subprocess.run([sys.executable, "-c", example.code], cwd=repo, env=docs_env(tmp_path), capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (repo / "outputs" / "api-demo" / "again.png").is_file()


# --------------------------------------------------------------------------
# the pages themselves
# --------------------------------------------------------------------------


@pytest.mark.parametrize("page", report.PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_benchmark_tables_are_generated_from_the_committed_results(page):
    text = page.read_text()
    assert report.MARKER.search(text), f"{page.name} has no generated tables"
    assert report.render_doc(text) == text, f"{page.name} is out of date: run python3 -m benchmarks.report"


def test_the_report_fills_only_between_markers_and_keeps_missing_figures_visible(tmp_path):
    (tmp_path / "chat.json").write_text('{"instructions": 3, "applied": 2, "questions": 1, "refused": 0}')
    text = "Prose 1.\n<!-- report:chat -->\nold table\n<!-- /report:chat -->\nProse 2.\n<!-- report:geometry -->\n" \
           "<!-- /report:geometry -->\n"
    out = report.render_doc(text, tmp_path)
    assert out.startswith("Prose 1.\n<!-- report:chat -->\n") and "old table" not in out and "Prose 2." in out
    assert "| instructions | 3: 2 applied, 1 answered with a question, 0 refused |" in out
    assert "| rules parse time, median | - |" in out  # a figure the file lacks is "-", not a crash
    assert "(no `benchmarks/results/geometry.json` yet)" in out
    assert report.render_doc(out, tmp_path) == out


def test_the_readme_is_a_short_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    assert "docs/images/" in "\n".join(lines) and (ROOT / "docs" / "images" / "demo.png").is_file()
    setup = next(b for b in page_blocks(ROOT / "README.md"))
    assert setup.code.splitlines() == ["python3 -m pip install torch==2.13.0 -e '.[test]'", "python3 -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text().replace(" -q ", " ")
    assert all(cmd in ci for cmd in setup.code.splitlines())  # CI runs the README's set-up commands


def test_the_two_model_shapes_table_compares_models_on_their_common_prompts(tmp_path):
    def rec(index, ious, holds):
        return {"index": index, "seconds": 1.0, "relations": [{"holds": h} for h in holds],
                "objects": [{"present": i > 0, "colour_present": True, "box_iou": i, "mask_iou": i, "attn_in_box": 0.5} for i in ious]}

    tiny = {"config": {"steps": 25}, "records": {
        "none": [rec(0, [0.0, 0.2], [False]), rec(1, [0.4, 0.4], [True])],
        "refocus": [rec(0, [0.5, 0.7], [True]), rec(1, [0.9, 0.9], [True])],
        "refocus:official": [rec(0, [0.1, 0.1], [False]), rec(1, [0.9, 0.9], [True])]}}
    plain = {"config": {"steps": 25}, "records": {"none": [rec(0, [0.3, 0.0], [False])]}}
    (tmp_path / "shapes.json").write_text(json.dumps(tiny))
    (tmp_path / "shapes_plain.json").write_text(json.dumps(plain))
    out = report.render_table("shapes_models", tmp_path)
    assert out.startswith("The 1 prompts every run scored")  # prompt 1 is not in the plain file
    assert "| `none` | 0.100 | 0.0 | 0 | (official) | (official) | (official) | 0.150 | 0.0 | 0 |" in out
    assert "| `refocus` | 0.100 | 0.0 | 100 | 0.600 | 100.0 | 100 | - | - | - |" in out


def test_the_latent_tuning_table_reads_three_and_six_seed_variants(tmp_path):
    variants = {"a": {"label": "three seeds", "follows_of_30": 9, "objects_right": 0.667},
                "b": {"label": "six seeds", "follows_of_60": 19, "objects_right": 0.703},
                "c": {"label": "not run"}}
    (tmp_path / "mmdit_latent_tuning.json").write_text(json.dumps({"config": {"command": "x"}, "variants": variants}))
    out = report.render_table("mmdit_latent_tuning", tmp_path)
    assert "| three seeds | 9 / 30 | 67 % |" in out and "| six seeds | 19 / 60 | 70 % |" in out
    assert "| not run | - | - |" in out


def test_the_demo_table_counts_square_and_wide_prompts_from_the_records(tmp_path):
    recs = [{"wide": False, "follows": True}, {"wide": False, "follows": False}, {"wide": True, "follows": True}]
    summary = {"prompts": 3, "follows": 2 / 3, "objects_right": 0.75, "colour_prompts": 2, "colour_follows": 0.5,
               "failures_by_kind": {"missing": 1, "count": 0, "relation": 0, "region": 0}, "s_per_render": 2.25}
    data = {"config": {"command": "demo"}, "summary": {"refocus": summary, "none": {"prompts": 3, "follows": 0.0}},
            "records": {"refocus": recs, "none": []}}
    (tmp_path / "demo_mmdit_latent.json").write_text(json.dumps(data))
    out = report.render_table("demo_mmdit_latent", tmp_path)
    # Wilson's 95 % interval of 2 / 3: 0.573 -+ 0.365; of 0 / 3: 0 to 0.562
    assert "| `refocus` (the default) | **2 / 3 (67 %)** | 21-94 % | 75 % | 1 / 2 | 1 / 1 | 1 / 0 / 0 / 0 | 1 / 2 (50 %) | 2.2 |" \
        in out
    assert "| `none` | 0 / 3 | 0-56 % | - | - | - | - / - / - / - | - | - |" in out


def test_the_demo_table_counts_renders_when_seeds_were_pooled(tmp_path):
    recs = [{"wide": False, "follows": s == 0, "seed": s} for s in (0, 1, 2) for _ in range(2)]
    summary = {"prompts": 2, "renders": 6, "follows": 2 / 6, "failures_by_kind": {}}
    data = {"config": {"command": "demo --seeds 0-2"}, "summary": {"refocus": summary}, "records": {"refocus": recs}}
    (tmp_path / "demo_mmdit_latent_seeds.json").write_text(json.dumps(data))
    out = report.render_table("demo_mmdit_latent_seeds", tmp_path)
    assert "| `refocus` (the default) | **2 / 6 (33 %)** | 10-70 % | - | 2 / 6 | - |" in out


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation but hyphens dropped, spaces -> hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_its_heading(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, broken


def test_the_shape_settling_table_reads_each_shapes_summary(tmp_path):
    summary = {"square": {"renders": 18, "final": 0.5, "best": 0.5556, "best_sigma": 0.179,
                          "settled_sigma_median": 0.3, "lost_late": 3}}
    data = {"config": {"command": "python3 -m benchmarks.shape_settling", "date": "2026-12-02"}, "summary": summary}
    (tmp_path / "shape_settling.json").write_text(json.dumps(data))
    out = report.render_table("shape_settling", tmp_path)
    assert "| square | 18 | 50 % | 56 % (noise 0.18) | 0.30 | 3 |" in out and "; 2026-12-02." in out
