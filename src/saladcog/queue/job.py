"""One queue job run as one Cog prediction, its answer mapped onto the queue worker's contract.

SaladCloud's worker binary (`salad-http-job-queue-worker`) POSTs each job's input to a local
port and reads only the HTTP status: 408, 429, 5xx or a dropped connection reject the job (it is
retried, up to 3 times, maybe on another node); any other status completes it with the response
body as the job's output, which must be valid JSON of at most 10 MB. Cog answers a failed
prediction with HTTP 200, so its answers are translated here:

- succeeded → 200 `{"id", "status": "succeeded", "output", "metrics"}`;
- failed because of the input (422 from the schema, the runner's own refusal: not audio, too
  long, unreadable text) → 200 `{"status": "failed", "error": "<the runner's words>"}`, final:
  a retry cannot help;
- failed because of the instance (coglet's worker crashed, out of memory, the server UNHEALTHY
  or not answering, busy 409) → 503 or 429, so the queue retries the job, elsewhere if the
  container goes (the entrypoint ends a container whose server is UNHEALTHY).

The prediction id is the job id (`PUT /predictions/{Salad-Job-Id}`), and a job delivered again
while it runs waits for the run already going (`Runs`) instead of starting a second one.

File outputs (Cog returns them as data URIs) and outputs over the job-output limit go to
S3-compatible storage (`SALADCOG_QUEUE_STORAGE=s3://bucket/prefix/`, boto3's own configuration
for endpoint and credentials), or to a presigned PUT URL given in the job (`output_put_url`);
the output then holds their URL. With neither, files small enough stay inline as data URIs, and
an output over the limit fails the job with a message that says so (never a truncated output).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import mimetypes
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from saladcog.addresses import ALLOW_ENV
from saladcog.cogwire import data_uris, decode_data_uri, error_text, runner_message
from saladcog.inputs import AddressRefused, Limits, checked_transport
from saladcog.storage import Storage, StorageError

# The queue refuses a job output over 10 MB; the smaller reading of "MB" keeps us under either.
MAX_OUTPUT_BYTES = 10_000_000
# A job's input is read up to this size (files belong in URLs, not in the job).
MAX_INPUT_BYTES = int(os.environ.get("SALADCOG_QUEUE_MAX_INPUT_BYTES", 16 << 20))
# Salad's job ids are UUIDs; anything safe as one path segment of Cog's API is accepted.
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Cog's words for a failure of the instance rather than of the input.
INSTANCE_FAILURES = re.compile(r"Worker crashed|MemoryError|OutOfMemoryError|out of memory|CUDA error", re.I)
# coglet frees its one slot just after it answers, so a job sent right after the last one can
# get 409 (seen in bench/queue_route.py: 1 job in 30). Another caller may also hold the slot.
# Wait this long for it (the queue's retries are few) before handing the job back.
BUSY_WAIT_S = 30.0
BUSY_POLL_S = 0.2
# A presigned PUT of the output (up to ~10 MB of files, more for a big JSON output) ends within this.
PUT_TIMEOUT_S = 600.0
# Keys of a job besides `input` that the door reads itself.
JOB_OPTIONS = ("output_put_url",)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the door answers the worker: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    def content(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False).encode()


def failed(message: str, status: int = 200) -> Answer:
    """A job that is over: retrying it cannot help (the worker records any non-retry status)."""
    return Answer(status, {"status": "failed", "error": message})


def retry(message: str, status: int = 503) -> Answer:
    """A job this instance could not run: the queue delivers it again."""
    return Answer(status, {"status": "retry", "error": message})


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    inputs: dict[str, Any]
    output_put_url: str | None = None


def parse_job(job_id: str | None, body: bytes) -> Job | Answer:
    """The job from the worker's request, or the final answer for one that cannot run."""
    if not job_id:
        return failed("the request has no Salad-Job-Id header: only the queue worker may call this route", 400)
    if not JOB_ID.match(job_id):
        return failed(f"Salad-Job-Id {job_id[:80]!r} is not a job id (letters, digits, '.', '_', '-')", 400)
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as e:
        return failed(f"the job's input is not JSON ({e}): send the prediction's inputs as a JSON object")
    if not isinstance(value, dict):
        return failed(f"the job's input is a JSON {type(value).__name__}, not an object of the prediction's inputs")
    # `{"input": {...}, "output_put_url": ...}` as in Cog's API, or the inputs themselves.
    if isinstance(value.get("input"), dict):
        unknown = sorted(set(value) - {"input", *JOB_OPTIONS})
        if unknown:
            return failed(f"unknown job field(s) {', '.join(unknown)}: a job is {{\"input\": {{...}}}}"
                          f" with optional {', '.join(JOB_OPTIONS)}")
        put_url = value.get("output_put_url")
        if put_url is not None and (not isinstance(put_url, str) or urlsplit(put_url).scheme not in ("http", "https")):
            return failed("output_put_url must be an http(s) URL (a presigned PUT URL)")
        return Job(job_id, value["input"], put_url)
    return Job(job_id, value)


def check_input_names(job: Job, schema_inputs: dict[str, Any]) -> Answer | None:
    """Cog ignores inputs it does not know (checked on coglet 0.23.1): a misspelt option would run
    with its default. Refuse them, naming what the model takes."""
    unknown = sorted(set(job.inputs) - set(schema_inputs))
    if unknown:
        return failed(f"unknown input(s) {', '.join(unknown)}: this model takes {', '.join(sorted(schema_inputs))}")
    return None


async def health(cog: httpx.AsyncClient) -> str:
    try:
        return (await cog.get("/health-check", timeout=10)).json().get("status", "")
    except (httpx.HTTPError, ValueError, AttributeError):
        return ""


async def predict(cog: httpx.AsyncClient, job: Job, outputs: Outputs) -> Answer:
    """Run the job as prediction `job.id` (sync PUT: no deadline, as the worker sets none)."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            response = await cog.put(f"/predictions/{job.id}", json={"input": job.inputs}, timeout=None)
        except httpx.TransportError as e:
            return retry(f"the Cog server does not answer ({e})")
        if response.status_code != 409 or time.monotonic() >= deadline:
            break
        if await health(cog) not in ("READY", "BUSY"):
            break
        await asyncio.sleep(BUSY_POLL_S)
    if response.status_code == 422:
        return failed(f"invalid input: {error_text(response.content)}")
    if response.status_code == 409:
        # Busy: one prediction at a time. After a crash coglet says UNHEALTHY and 409 for good.
        state = await health(cog)
        if state in ("UNHEALTHY", "DEFUNCT", "SETUP_FAILED"):
            return retry(f"the Cog server is {state}")
        return retry(f"the Cog server stayed busy with another prediction for {BUSY_WAIT_S:.0f} s", 429)
    if response.status_code not in (200, 201):
        # 202: a prediction with this id runs without this door knowing it (no way to wait for it).
        return retry(f"the Cog server answered HTTP {response.status_code}: {error_text(response.content)}")
    try:
        prediction = response.json()
    except ValueError:
        return retry(f"the Cog server answered HTTP {response.status_code} with a body that is not JSON")
    status = prediction.get("status")
    if status == "succeeded":
        result = {"id": job.id, "status": "succeeded", "output": prediction.get("output"),
                  "metrics": prediction.get("metrics", {})}
        try:
            return await outputs.place(job, result)
        except OutputRefused as e:  # the job's own URL: retrying cannot help
            return failed(str(e))
        except StorageError as e:
            return retry(f"the output could not be stored: {e}")
    error = str(prediction.get("error") or "")
    if status == "failed" and not INSTANCE_FAILURES.search(error):
        state = await health(cog)
        # BUSY too: coglet may not have freed its slot yet just after it answered (seen here).
        if state in ("READY", "BUSY"):
            return failed(runner_message(error) or "the prediction failed without a message")
        return retry(f"the prediction failed and the Cog server is now {state or 'not answering'}: {error}")
    return retry(f"the prediction ended {status}: {error}")


class OutputRefused(Exception):
    """The job's output_put_url points where this server may not connect."""


class Runs:
    """The jobs running now, by id: a second delivery of a running job waits for the same run.

    The run is a task of its own, so the worker dropping its connection does not cancel the
    prediction, and the next delivery of that job picks up its answer."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[Answer]] = {}
        self.attached = 0  # deliveries that found their job already running

    async def answer(self, job_id: str, run: Callable[[], Awaitable[Answer]]) -> Answer:
        task = self._running.get(job_id)
        if task is None:
            task = asyncio.ensure_future(run())
            self._running[job_id] = task
            task.add_done_callback(lambda _t: self._running.pop(job_id, None))
        else:
            self.attached += 1
        return await asyncio.shield(task)


@dataclasses.dataclass
class Outputs:
    """Where outputs too big for the job, and file outputs, go."""

    storage: Storage | None = None
    limit: int = MAX_OUTPUT_BYTES

    @classmethod
    def from_env(cls, environ=os.environ) -> Outputs:
        url = environ.get("SALADCOG_QUEUE_STORAGE", "").strip()
        return cls(Storage.from_url(url) if url else None)

    async def place(self, job: Job, result: dict[str, Any]) -> Answer:
        uris = list(dict.fromkeys(data_uris(result["output"])))  # each file once
        target = "storage" if self.storage else "put_url" if job.output_put_url else None
        if uris and target:
            if target == "put_url" and len(uris) > 1:
                return failed(f"the output has {len(uris)} files but the job gives one output_put_url")
            urls = {}
            for i, uri in enumerate(uris):
                try:
                    mime, data = decode_data_uri(uri)
                except ValueError as e:
                    return failed(f"the model's file output could not be read: {e}")
                urls[uri] = await self._store(job, f"output-{i}{_extension(mime)}", mime, data)
            result = {**result, "output": _replace(result["output"], urls)}
        body = json.dumps(result, ensure_ascii=False).encode()
        if len(body) <= self.limit:
            return Answer(200, result)
        if target is None or (target == "put_url" and uris):
            return failed(f"the output is {len(body):,} bytes, over the job queue's {self.limit:,}-byte limit for"
                          " a job's output, and no storage is configured: set SALADCOG_QUEUE_STORAGE=s3://bucket/"
                          "prefix/ on the container group, or give output_put_url (a presigned PUT URL) in the job")
        url = await self._store(job, "output.json", "application/json",
                                json.dumps(result["output"], ensure_ascii=False).encode())
        return Answer(200, {**{k: v for k, v in result.items() if k != "output"}, "output_url": url,
                            "output_bytes": len(body)})

    async def _store(self, job: Job, name: str, mime: str, data: bytes) -> str:
        if self.storage is not None:
            return await asyncio.to_thread(self.storage.put_bytes, f"{job.id}/{name}", data, mime)
        assert job.output_put_url is not None
        return await asyncio.to_thread(_put_to_url, job.output_put_url, mime, data)


def _put_to_url(url: str, mime: str, data: bytes) -> str:
    """PUT `data` to the job's presigned URL under the same address rules as a runner's URL inputs
    (saladcog.inputs.checked_transport): the job names the URL, so it may not reach loopback,
    private or link-local addresses unless SALADCOG_FETCH_ALLOW_NETWORKS allows them."""
    limits = Limits.from_env()
    transport = checked_transport(time.monotonic() + PUT_TIMEOUT_S, limits)
    try:
        with httpx.Client(transport=transport, timeout=httpx.Timeout(60, read=600)) as http:
            response = http.put(url, content=data, headers={"Content-Type": mime})
    except AddressRefused:
        raise OutputRefused(f"output_put_url's address is not allowed ({ALLOW_ENV})") from None
    except httpx.HTTPError as e:
        raise StorageError(f"PUT to output_put_url failed: {e}") from None
    if response.status_code >= 300:
        raise StorageError(f"PUT to output_put_url answered HTTP {response.status_code}: {response.text[:200]}")
    return url.split("?", 1)[0]


def _extension(mime: str) -> str:
    return {"audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3"}.get(
        mime, mimetypes.guess_extension(mime) or ".bin")


def _replace(value, urls: dict[str, str]):
    if isinstance(value, str):
        return urls.get(value, value)
    if isinstance(value, list):
        return [_replace(v, urls) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, urls) for k, v in value.items()}
    return value
