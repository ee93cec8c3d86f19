"""`saladcog queue run`: submit a folder of files or a list of URLs to a SaladCloud job queue,
follow the jobs, and collect one result file per input, resumably.

    api = QueueApi.from_env("my-org", "my-project")     # SALAD_API_KEY, SALAD_API_URL
    run = QueueRun(api, "transcripts", Path("results"), storage=Storage.from_url("s3://b/in/"))
    run.add_folder(Path("talks"))
    run.submit()
    run.follow()                                          # until every job has ended

Local files go to the storage first and each job gets a presigned GET URL (the container fetches
it); URLs are passed as they are. Results: `<name>.json` (the job's output), and with
`subtitles="srt"|"vtt"` also `<name>.srt|.vtt`. Everything is recorded in the folder's state file
(saladcog.queue.state), so a run stopped at any point goes on where it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue as stdlib_queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from salad_cloud_sdk import SaladCloudSdk
from salad_cloud_sdk.models import QueueJobPrototype, QueuePrototype
from salad_cloud_sdk.net.environment import Environment

from saladcog.queue.state import FINAL, Entry, State
from saladcog.storage import Location, Storage

# SigV4 presigned URLs live at most 7 days: longer than any job waits in a queue.
INPUT_URL_SECONDS = 7 * 24 * 3600
MAX_RESULT_BYTES = 1 << 30
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".mov", ".aac", ".wma"}


@dataclasses.dataclass(frozen=True)
class JobView:
    id: str
    status: str  # pending | running | succeeded | cancelled | failed
    output: object = None


@dataclasses.dataclass
class QueueApi:
    """The SaladCloud API's queue calls for one project, through salad-cloud-sdk.

    Jobs that carry a webhook are created and read with httpx instead: salad-cloud-sdk 0.9.0a17's
    QueueJob model checks a job's `webhook` against a timestamp pattern, so reading any job that
    has a webhook URL raises ValueError (seen against the API stand-in, which answers as the
    SDK's own request model describes)."""

    sdk: SaladCloudSdk
    organization: str
    project: str
    api_key: str = ""
    base_url: str = Environment.DEFAULT.url

    @classmethod
    def from_env(cls, organization: str, project: str, environ=os.environ) -> QueueApi:
        api_key = environ.get("SALAD_API_KEY")
        if not api_key:
            raise ValueError("set SALAD_API_KEY to your SaladCloud API key")
        base_url = environ.get("SALAD_API_URL") or Environment.DEFAULT.url
        return cls(SaladCloudSdk(api_key=api_key, base_url=base_url), organization, project, api_key, base_url)

    def _where(self, queue: str | None = None) -> dict:
        where = {"organization_name": self.organization, "project_name": self.project}
        return {**where, "queue_name": queue} if queue else where

    def create_queue(self, name: str, description: str = "saladcog jobs"):
        body = QueuePrototype(name=name, display_name=name, description=description)
        return self.sdk.queues.create_queue(request_body=body, **self._where())

    def create_job(self, queue: str, value: dict, metadata: dict, webhook: str | None = None) -> str:
        if webhook:
            body = {"input": value, "metadata": metadata, "webhook": webhook}
            return self._jobs_call("POST", queue, "", body)["id"]
        body = QueueJobPrototype(input=value, metadata=metadata)
        return self.sdk.queues.create_queue_job(request_body=body, **self._where(queue)).id_

    def get_job(self, queue: str, job_id: str, has_webhook: bool = False) -> JobView:
        if has_webhook:
            job = self._jobs_call("GET", queue, f"/{job_id}")
            return JobView(job["id"], job["status"], job.get("output"))
        job = self.sdk.queues.get_queue_job(queue_job_id=job_id, **self._where(queue))
        return JobView(job.id_, getattr(job.status, "value", job.status), getattr(job, "output", None))

    def _jobs_call(self, method: str, queue: str, path: str, body: dict | None = None) -> dict:
        url = (f"{self.base_url}/organizations/{self.organization}/projects/{self.project}"
               f"/queues/{queue}/jobs{path}")
        response = httpx.request(method, url, json=body, headers={"Salad-Api-Key": self.api_key}, timeout=60)
        if response.status_code >= 300:
            raise RuntimeError(f"SaladCloud API: {method} {url} answered HTTP {response.status_code}:"
                               f" {response.text[:300]}")
        return response.json()


@dataclasses.dataclass
class Progress:
    done: int
    failed: int
    running: int
    pending: int
    jobs_per_hour: float | None
    eta_seconds: float | None

    def line(self) -> str:
        rate = f"{self.jobs_per_hour:.0f} jobs/h" if self.jobs_per_hour else "-- jobs/h"
        eta = "--" if self.eta_seconds is None else _duration(self.eta_seconds)
        return (f"done {self.done} | failed {self.failed} | running {self.running} | pending {self.pending}"
                f" | {rate} | ETA {eta}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class QueueRun:
    def __init__(self, api: QueueApi, queue: str, out_dir: Path, *, storage: Storage | None = None,
                 inputs: dict | None = None, input_name: str = "audio", subtitles: str | None = None,
                 webhook: str | None = None):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.api = api
        self.queue = queue
        self.out_dir = out_dir
        self.storage = storage
        self.inputs = dict(inputs or {})
        self.input_name = input_name
        self.subtitles = subtitles
        self.webhook = webhook
        self.state = State.load(out_dir, queue)
        self.hints: stdlib_queue.Queue[str] = stdlib_queue.Queue()  # job ids a webhook says changed
        self._started = time.monotonic()
        self._done_at_start = self.state.count("collected")

    def add_folder(self, folder: Path) -> list[Entry]:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        return [self.state.add(str(p.resolve()), p.stem) for p in files]

    def add_urls(self, urls: list[str]) -> list[Entry]:
        entries = []
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"{url!r} is not an http(s) URL")
            stem = Path(urlsplit(url).path).stem or "input"
            entries.append(self.state.add(url, stem))
        self.state.save()
        return entries

    def submit(self, retry_failed: bool = False) -> int:
        """Create a job for every entry that has none (and, asked, for every failed one)."""
        submitted = 0
        for entry in self.state.entries.values():
            if entry.status == "new" or (retry_failed and entry.status == "failed"):
                value = {"input": {**self.inputs, self.input_name: self._input_url(entry)}}
                if self.subtitles:
                    value["input"]["transcription"] = self.subtitles
                entry.job_id = self.api.create_job(self.queue, value, {"saladcog_name": entry.name}, self.webhook)
                entry.status, entry.error = "pending", None
                self.state.save()
                submitted += 1
        return submitted

    def _input_url(self, entry: Entry) -> str:
        if urlsplit(entry.source).scheme in ("http", "https"):
            return entry.source
        if self.storage is None:
            raise ValueError("local files need --storage s3://bucket/prefix/ to upload them to (the container"
                             " fetches each input by URL)")
        path = Path(entry.source)
        name = f"inputs/{entry.name}{path.suffix}"
        self.storage.upload(name, path)
        return self.storage.presigned_get(name, INPUT_URL_SECONDS)

    def poll(self) -> Progress:
        """Look at every job not yet over once; collect the ones that ended."""
        for entry in self.state.entries.values():
            if entry.status in FINAL or entry.job_id is None:
                continue
            job = self.api.get_job(self.queue, entry.job_id, has_webhook=bool(self.webhook))
            status = job.status
            if status == "succeeded":
                self._collect(entry, job.output)
            elif status in ("failed", "cancelled"):
                entry.status = "failed"
                entry.error = f"the queue ended the job {status} (after its retries: the instances kept failing)"
            else:
                entry.status = status
            self.state.save()
        return self.progress()

    def _collect(self, entry: Entry, output) -> None:
        if isinstance(output, dict) and output.get("status") == "failed":
            entry.status, entry.error = "failed", str(output.get("error"))
            return
        if isinstance(output, dict) and output.get("output_url"):
            location = Location.parse(output["output_url"])
            store = Storage(location.bucket, "", self.storage.client if self.storage else None)
            output = {**output, "output": store.get_json(location.key, MAX_RESULT_BYTES)}
        result = output.get("output") if isinstance(output, dict) else output
        _write(self.out_dir / f"{entry.name}.json", json.dumps(result, ensure_ascii=False, indent=1))
        if self.subtitles and isinstance(result, dict) and isinstance(result.get("transcription"), str):
            _write(self.out_dir / f"{entry.name}.{self.subtitles}", result["transcription"])
        entry.status, entry.error = "collected", None

    def progress(self) -> Progress:
        counts = {s: self.state.count(s) for s in ("collected", "failed", "running", "pending", "new")}
        done_now = counts["collected"] - self._done_at_start
        elapsed = time.monotonic() - self._started
        rate = done_now / elapsed * 3600 if done_now and elapsed > 0 else None
        left = counts["running"] + counts["pending"] + counts["new"]
        eta = left / rate * 3600 if rate else None
        return Progress(counts["collected"], counts["failed"], counts["running"], counts["pending"] + counts["new"],
                        rate, eta)

    def follow(self, poll_s: float = 10.0, deadline_s: float = 7 * 24 * 3600,
               show: Callable[[Progress], None] | None = None) -> Progress:
        """Poll until every job has ended (or the deadline); a webhook hint cuts a wait short."""
        deadline = time.monotonic() + deadline_s
        while True:
            progress = self.poll()
            if show:
                show(progress)
            if progress.running + progress.pending == 0 or time.monotonic() >= deadline:
                return progress
            try:
                self.hints.get(timeout=min(poll_s, max(deadline - time.monotonic(), 0)))
            except stdlib_queue.Empty:
                pass


def _write(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


def show_on_terminal(progress: Progress) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    print(progress.line(), end=end, file=sys.stderr, flush=True)
