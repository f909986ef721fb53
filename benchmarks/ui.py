"""Web UI benchmark in headless Chromium: how soon the page is usable, how fast a drag shows in the plan.

    python -m benchmarks.ui [--loads 10] [--drags 20] [--screenshot docs/images/ui.png]

The server is the real one (uvicorn, ``plan_and_render.app.web``) over a temporary store, the rules planner and
models/shapes-tiny; the browser is Debian's Chromium (tools/browser.py). Measured in the page:

* page ready: from the server's first response byte (Navigation Timing ``responseStart``) to the page
  interactive (config read, handlers bound, sessions listed), over ``--loads`` fresh tabs;
* drag -> plan view: from the mouse-up to the next frame after the plan table shows the new box (the layout
  change went to the server, was checked and committed as a turn, and came back), over ``--drags`` drags of an
  idle server, and again while a render runs on the server's worker (the drag must not wait for it);
* two 2-step renders of the plan (the first loads the pipeline unless --screenshot did), for scale.

Targets (issue 17): page ready < 3000 ms, drag < 200 ms. Prints a table and writes benchmarks/results/ui.json;
``--screenshot`` also saves the page after a render and a chat edit (docs/images/ui.png).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from plan_and_render.app.web import UIConfig, create_app
from tools import browser

ROOT = Path(__file__).resolve().parents[1]
SHAPES = os.path.relpath(ROOT / "models" / "shapes-tiny")  # shown in the page header
PROMPT = "a red circle to the left of a blue square"


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "median_ms": round(statistics.median(values), 1),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
            "max_ms": round(max(values), 1)}


def wait_images(page, before: list[str]) -> None:
    page.wait_for_function("(before) => { const i = [...document.querySelectorAll('#image img')];"
                           " return i.length && i.every(x => x.complete && x.naturalWidth > 0)"
                           " && i.some(x => !before.includes(x.getAttribute('src'))); }", arg=before, timeout=300000)


def shown(page) -> list[str]:
    return page.eval_on_selector_all("#image img", "imgs => imgs.map(i => i.getAttribute('src'))")


def measure(chrome, url: str, loads: int, drags: int) -> dict:
    ready = []
    for _ in range(loads):
        context = chrome.new_context()
        ready.append(browser.open_page(context.new_page(), url))
        context.close()

    context = chrome.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(300000)
    browser.open_page(page, url)
    page.uncheck("#auto-render")
    browser.plan_prompt(page, PROMPT)
    page.evaluate("performance.setResourceTimingBufferSize(100000)")
    idle, parts = [], []
    for k in range(drags):
        idle.append(browser.drag(page, "circle-1", 24 if k % 2 else -24, 0))
        parts.append(page.evaluate("window.__dragParts"))

    # two 2-step renders for scale (the first may load the pipeline), then drags while a long render runs
    page.fill("#steps", "2")
    render_s = []
    for _ in range(2):
        before = shown(page)
        t0 = time.perf_counter()
        page.click("#render-button")
        wait_images(page, before)
        render_s.append(round(time.perf_counter() - t0, 2))
    page.fill("#steps", "60")
    page.click("#render-button")
    page.wait_for_function("() => document.getElementById('progress-text').textContent.startsWith('step 1')")
    busy = []
    for k in range(drags):
        busy.append(browser.drag(page, "circle-1", 24 if k % 2 else -24, 0))
    still = page.text_content("#progress-text")
    job = page.evaluate("() => fetch('/api/jobs/' + window.planAndRender.job).then(r => r.json())")
    context.close()
    split = {k: round(statistics.median(p[k] for p in parts), 1)
             for k in ("to_request", "request", "server", "after_response")}
    return {"page_ready": summary(ready), "drag_idle": summary(idle), "drag_idle_median_split_ms": split,
            "drag_during_render": summary(busy),
            "render_still_running_after_drags": job["state"] == "running", "progress_after_drags": still,
            "render_2_steps_first_s": render_s[0], "render_2_steps_warm_s": render_s[1]}


def screenshot(chrome, url: str, path: Path) -> None:
    """The page after a plan, a drag, a 2-image render and a chat edit re-rendered: what docs/ui.md shows."""
    context = chrome.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(300000)
    browser.open_page(page, url)
    browser.plan_prompt(page, "a red circle to the left of a blue square and a green triangle above the square")
    page.uncheck("#auto-render")
    browser.drag(page, "triangle-1", 30, 0)
    page.fill("#steps", "12")
    page.fill("#num-images", "2")
    page.check("#auto-render")
    before = shown(page)
    page.click("#render-button")
    wait_images(page, before)
    page.fill("#num-images", "1")
    before = shown(page)
    page.fill("#chat-input", "make the circle yellow")
    page.press("#chat-input", "Enter")
    wait_images(page, before)
    page.wait_for_timeout(300)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    context.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", type=int, default=10, help="fresh page loads to time")
    ap.add_argument("--drags", type=int, default=20, help="drags to time, idle and during a render")
    ap.add_argument("--screenshot", type=Path, help="also save a screenshot of the page here")
    args = ap.parse_args()
    reason = browser.missing()
    if reason:
        sys.exit(f"error: {reason}")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(UIConfig(store=Path(tmp) / "sessions.db", model=SHAPES, planner="rules", steps=2))
        with browser.serve(app) as url, browser.chromium() as chrome:
            version = chrome.version
            if args.screenshot:  # first: its renders must not wait behind the long one measure() leaves running
                screenshot(chrome, url, args.screenshot)
            res = measure(chrome, url, args.loads, args.drags)
    res = {
        "command": "python -m benchmarks.ui " + shlex.join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "threads": torch.get_num_threads(), "chromium": version,
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),  # the machine is shared: read figures with it
        "targets": {"page_ready_ms": 3000, "drag_ms": 200}, **res,
    }
    out = ROOT / "benchmarks" / "results" / "ui.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"{'measure':<28}{'n':>4}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}")
    for key in ("page_ready", "drag_idle", "drag_during_render"):
        r = res[key]
        print(f"{key:<28}{r['n']:>4}{r['median_ms']:>11.1f}{r['p90_ms']:>9.1f}{r['max_ms']:>9.1f}")
    print("idle drag, median split (ms):", ", ".join(f"{k} {v}" for k, v in res["drag_idle_median_split_ms"].items()))
    print(f"2-step render: {res['render_2_steps_first_s']} s first, {res['render_2_steps_warm_s']} s warm; the long render was still running after the "
          f"drags: {res['render_still_running_after_drags']}  ->  {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
