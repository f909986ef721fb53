"""The web UI in headless Chromium: a server on a free port, a browser, and the in-page measurements that the
browser tests and ``benchmarks.ui`` share.

Chromium is Debian's (``apt-get install chromium``: /usr/bin/chromium, or $PLAN_AND_RENDER_CHROMIUM), driven
by the ``playwright`` package; nothing is downloaded (never ``playwright install``). Each launch gets a fresh,
empty profile from playwright, and the flags keep Chromium off the network it cannot reach.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = Path(os.environ.get("PLAN_AND_RENDER_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing() -> str | None:
    """Why the browser cannot run here (a skip reason), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PLAN_AND_RENDER_CHROMIUM)"
    return None


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free 127.0.0.1 port in a thread; yield its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the UI server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (playwright ``Browser``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def watch_offsite(page: Any, base: str) -> list[str]:
    """Every request the page makes outside ``base`` (the UI must make none): the list fills as it goes."""
    offsite: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((base, "data:")) else offsite.append(r.url))
    return offsite


def open_page(page: Any, url: str, timeout_ms: float = 15000) -> float:
    """Load ``url`` and wait until the page says it is interactive; return the page's own measure (ms from the
    server's first response byte to the page ready: config read, handlers bound, session drawn)."""
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=timeout_ms)
    return float(page.evaluate("window.planAndRender.metrics.readyMs"))


# Resolves with ms from the mouse-up to the next frame after the plan table row of ``id`` changes: what the
# user sees as "the plan updated". Installed before the drag; the Python side awaits window.__planUpdate.
# window.__dragParts splits that time with the layout request's Resource Timing and its Server-Timing header.
_PROBE = """(id) => {
  const body = document.querySelector("#plan-table tbody");
  const row = () => (body.querySelector(`tr[data-id="${id}"]`) || {}).textContent || "";
  const before = row();
  let up = null;
  window.addEventListener("pointerup", () => { up = performance.now(); }, { capture: true, once: true });
  window.__planUpdate = new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      if (up === null || row() === before) return;
      obs.disconnect();
      requestAnimationFrame(() => {
        const total = performance.now() - up;
        const req = performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/layout")).pop();
        window.__dragParts = req && req.startTime >= up ? {
          total, to_request: req.startTime - up, request: req.responseEnd - req.startTime,
          server: req.serverTiming.length ? req.serverTiming[0].duration : null,
          after_response: up + total - req.responseEnd } : { total };
        resolve(total);
      });
    });
    obs.observe(body, { childList: true, subtree: true, characterData: true });
  });
}"""


def drag(page: Any, object_id: str, dx: float, dy: float, corner: bool = False) -> float:
    """Drag a box (or its resize corner) by (dx, dy) pixels with the mouse; return the ms from mouse-up until the
    plan table shows the change (measured in the page)."""
    target = page.locator(f'#layout .box[data-id="{object_id}"]' + (" .handle" if corner else ""))
    box = target.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate(_PROBE, object_id)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=6)
    page.mouse.up()
    return float(page.evaluate("window.__planUpdate"))


def plan_prompt(page: Any, prompt: str) -> None:
    """Type a prompt, press Plan and wait for the layout to show its boxes."""
    page.fill("#prompt", prompt)
    page.click("#plan-button")
    page.wait_for_function("(p) => window.planAndRender.session && window.planAndRender.session.prompt === p "
                           "&& document.querySelectorAll('#layout .box').length > 0", arg=prompt)
