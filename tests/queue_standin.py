"""Stand-ins for SaladCloud's job queue: the queue service, and the worker binary that runs in
the container, following salad-http-job-queue-worker v0.6.0's contract:

- jobs are taken one at a time, and only while the readiness check passes;
- each job's `input` is POSTed verbatim to http://localhost:{port}{path} with
  `Content-Type: application/json` and `Salad-Job-Id`, with no request timeout;
- 408, 429, any 5xx or a connection error reject the job: it goes back to the queue and is
  retried up to 3 times, then fails; any other status completes it with the body as `output`,
  which the service accepts only as valid JSON of at most 10 MB (else the job is rejected).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

MAX_RETRIES = 3
MAX_OUTPUT_BYTES = 10_000_000
RETRY_STATUSES = {408, 429}


@dataclasses.dataclass
class QueuedJob:
    id: str
    input: Any
    status: str = "pending"  # pending | running | succeeded | failed
    output: Any = None
    deliveries: int = 0
    rejections: int = 0
    answers: list[int] = dataclasses.field(default_factory=list)  # HTTP status per delivery
    completions: int = 0
    metadata: dict | None = None
    webhook: str | None = None
    create_time: str = dataclasses.field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


class QueueService:
    """The queue: jobs in order, each delivered to one worker at a time, retried on rejection."""

    def __init__(self) -> None:
        self.jobs: dict[str, QueuedJob] = {}
        self._pending: collections.deque[str] = collections.deque()
        self._cond = threading.Condition()
        self.on_end: Callable[[QueuedJob], None] | None = None  # called once a job has ended

    def submit(self, value: Any, job_id: str | None = None, **extra) -> str:
        job = QueuedJob(job_id or str(uuid.uuid4()), value, **extra)
        with self._cond:
            self.jobs[job.id] = job
            self._pending.append(job.id)
            self._cond.notify_all()
        return job.id

    def take(self, timeout: float) -> QueuedJob | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending, timeout):
                return None
            job = self.jobs[self._pending.popleft()]
            job.status = "running"
            job.deliveries += 1
            return job

    def complete(self, job: QueuedJob, body: bytes) -> None:
        try:
            if len(body) > MAX_OUTPUT_BYTES:
                raise ValueError(f"output of {len(body)} bytes")
            output = json.loads(body)
        except ValueError:
            self.reject(job)  # the service refuses the output: the worker rejects the job
            return
        with self._cond:
            job.status, job.output = "succeeded", output
            job.completions += 1
            self._cond.notify_all()
        self._ended(job)

    def reject(self, job: QueuedJob) -> None:
        with self._cond:
            job.rejections += 1
            if job.rejections > MAX_RETRIES:
                job.status = "failed"
            else:
                job.status = "pending"
                self._pending.append(job.id)
            self._cond.notify_all()
        if job.status == "failed":
            self._ended(job)

    def _ended(self, job: QueuedJob) -> None:
        if self.on_end:
            self.on_end(job)

    def wait_done(self, timeout: float) -> bool:
        """True once every job has succeeded or failed."""
        with self._cond:
            return self._cond.wait_for(
                lambda: all(j.status in ("succeeded", "failed") for j in self.jobs.values()), timeout)


class StandInWorker:
    """The worker binary's loop in a thread: take a job while ready, POST it, report the outcome."""

    def __init__(self, service: QueueService, port: int, path: str, ready: Callable[[], bool]):
        self.service = service
        self.url = f"http://localhost:{port}/{path.lstrip('/')}"
        self.ready = ready
        self.not_ready_polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._http = httpx.Client(timeout=None)

    def __enter__(self) -> StandInWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)
        self._http.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.ready():
                self.not_ready_polls += 1
                self._stop.wait(0.2)
                continue
            job = self.service.take(timeout=0.2)
            if job is not None:
                self.execute(job)

    def execute(self, job: QueuedJob) -> None:
        try:
            response = self._http.post(self.url, content=json.dumps(job.input).encode(),
                                       headers={"Content-Type": "application/json", "Salad-Job-Id": job.id})
        except httpx.TransportError:
            job.answers.append(0)
            self.service.reject(job)
            return
        job.answers.append(response.status_code)
        if response.status_code in RETRY_STATUSES or response.status_code >= 500:
            self.service.reject(job)
        else:
            self.service.complete(job, response.content)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
