"""Render jobs run one at a time on a worker thread, with per-step progress others can read.

    q = RenderQueue()
    job = q.submit(lambda progress: work(progress))   # returns at once; work runs on the worker
    q.snapshot(job.id)    # {"state": "queued" | "running" | "done" | "error", "position", "step", "steps", ...}

Why a queue and one worker: a diffusion pipeline holds state while it samples (attention processors,
the scheduler's timesteps), so two renders must never run through one pipeline at once, and on one
accelerator they would only slow each other down. The web server hands renders here and keeps
answering requests (plans, drags, progress polls) while the worker samples. ``work`` receives a
``progress(step, steps)`` function to call from the pipeline's per-step callback, and returns the
job's result (a JSON-able dict). A failure is kept as one line: a ``PlanAndRenderError``'s own
message, anything else as ``unexpected <Type>: <message>``; the worker goes on with the next job.
``shutdown`` (the server stopping) ends the running job at its next step - ``progress`` raises
``Cancelled`` inside the sampling loop - and cancels the queued ones, so no render is cut off mid-step
by the interpreter exiting.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import PlanAndRenderError, UsageError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Work = Callable[[Progress], dict]
KEEP_FINISHED = 256  # finished jobs remembered for their pages to collect


class Cancelled(PlanAndRenderError):
    """The render was stopped before it finished (the server is shutting down)."""

    type = "cancelled"


@dataclass
class Job:
    """One render request and what became of it. ``started``/``finished`` are ``time.monotonic()`` values."""

    id: str
    work: Work
    label: str = ""
    order: int = 0
    state: str = "queued"  # queued -> running -> done | error
    step: int = 0
    steps: int = 0
    result: dict | None = None
    error: dict | None = None  # {"type": ..., "message": one line}
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None


class RenderQueue:
    """A FIFO of render jobs and the one worker thread that runs them (started on the first job)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._worker: threading.Thread | None = None
        self.running = 0  # jobs inside ``work`` right now
        self.peak_running = 0  # the most ever inside ``work`` at once: 1 is the promise
        self._closing = False

    def submit(self, work: Work, label: str = "") -> Job:
        """Queue ``work``; it runs after every job submitted before it."""
        job = Job(uuid.uuid4().hex[:16], work, label, next(self._order))
        with self._lock:
            if self._closing:
                raise Cancelled("the server is stopping; no new renders")
            self._jobs[job.id] = job
            self._forget_old()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="render-worker", daemon=True)
                self._worker.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UsageError(f"no render job {job_id!r} (finished jobs are kept for the last {KEEP_FINISHED})")
        return job

    def snapshot(self, job_id: str) -> dict[str, Any]:
        """What a page shows: state, its place in the queue (jobs ahead of it), step/steps, result or error."""
        job = self.get(job_id)
        with self._lock:
            ahead = sum(1 for j in self._jobs.values() if j.state in ("queued", "running") and j.order < job.order)
            return {"id": job.id, "state": job.state, "position": ahead if job.state == "queued" else 0,
                    "step": job.step, "steps": job.steps, "result": job.result, "error": job.error,
                    "started": job.started, "finished": job.finished}

    def status(self) -> dict[str, int]:
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {"queued": states.count("queued"), "running": self.running, "peak_running": self.peak_running}

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop: the running job ends at its next step, queued ones are cancelled, the worker exits."""
        with self._lock:
            self._closing = True
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state, job.error = "error", {"type": Cancelled.type, "message": "cancelled: the server stopped"}
            worker = self._worker
        self._queue.put(None)
        if worker is not None:
            worker.join(timeout)

    # -- the worker -----------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if job.state == "queued":  # not cancelled meanwhile
                self._execute(job)

    def _execute(self, job: Job) -> None:
        def progress(step: int, steps: int) -> None:
            if self._closing:
                raise Cancelled("cancelled: the server stopped")
            job.step, job.steps = int(step), int(steps)

        with self._lock:
            job.state, job.started = "running", time.monotonic()
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        try:
            result, error = job.work(progress), None
        except PlanAndRenderError as exc:
            result, error = None, {"type": exc.type, "message": exc.message}
        except Exception as exc:  # noqa: BLE001 - a bug in one render must not stop the worker
            log.exception("render job %s failed", job.id)
            result, error = None, {"type": "unexpected", "message": f"unexpected {type(exc).__name__}: {exc}"}
        with self._lock:
            self.running -= 1
            job.result, job.error, job.finished = result, error, time.monotonic()
            job.state = "error" if error else "done"

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in ("done", "error")]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[key]
