"""The batch node's I/O worker: beside one Cog server, it keeps the server fed from an SQS queue
and writes each result to S3-compatible storage, exactly once.

    fetcher threads  --receive, download-->  ready inputs  --one caller (this thread)-->  Cog
    heartbeat thread: keeps every held message invisible while it is worked on
    reporter thread: stores each result (one PUT, only if none is stored), then deletes the message

A message is deleted only after its result is stored; a result already stored is never computed
again (checked before the download, and the PUT itself is conditional: If-None-Match: *). A
worker that dies leaves its messages to come back after SALADCOG_VISIBILITY_TIMEOUT seconds.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import queue
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import botocore.config
import botocore.exceptions

from saladcog import handoff
from saladcog.client import Client, ClientError, PredictionError, RetryPolicy
from saladcog.cogwire import runner_message
from saladcog.storage import Storage, StorageError, s3_client
from saladcog.worker.fetch import Fetcher, InputFailure, Stopped, TransientFailure, describe
from saladcog.worker.jobs import Job, MessageError
from saladcog.worker.prefetch import Budget
from saladcog.worker.settings import Settings

log = logging.getLogger("saladcog.worker")

# Exit statuses: the supervisor ends the container, and Salad moves the node elsewhere.
EXIT_INSTANCE_FAILURES = 3
EXIT_TOO_SLOW = 4
WAIT_STEP_S = 0.5
START_TIMEOUT_S = 3600.0  # model loading on a fresh node
HEALTHY = ("READY", "BUSY")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def sqs_client():
    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": 5})
    return boto3.session.Session().client("sqs", config=config)


def worker_name() -> str:
    return os.environ.get("SALAD_MACHINE_ID") or socket.gethostname()


@dataclasses.dataclass
class Held:
    """A message this worker holds (its receipt keeps it invisible to the others)."""

    message_id: str
    receipt: str
    body: str
    receives: int = 1
    job: Job | None = None
    path: Path | None = None
    size: int = 0  # bytes of `path` counted in the budget


@dataclasses.dataclass
class Outcome:
    """What the reporter stores for a job: the result record, and the subtitles beside it."""

    held: Held
    record: dict[str, Any]
    subtitles: str | None = None


class Worker:
    def __init__(self, settings: Settings, *, sqs=None, s3=None, transport=None):
        self.settings = settings
        self.sqs = sqs or sqs_client()
        self.s3 = s3 or s3_client()
        self.results = Storage.from_url(settings.results_url, client=self.s3)
        retry = RetryPolicy(busy_wait=settings.predict_timeout_s)
        self.cog = Client(settings.cog_url, timeout=settings.predict_timeout_s, retry=retry)
        self.transport = transport  # per download, from its deadline: see fetch.Fetcher
        self.budget = Budget(settings.prefetch_files, settings.prefetch_bytes)
        self.stopping = threading.Event()
        self.stop_deadline = float("inf")
        self.exit_code = 0
        self.ready: queue.Queue[Held] = queue.Queue()
        self.outcomes: queue.Queue[Outcome | None] = queue.Queue()
        self.held: dict[str, Held] = {}
        self._held_lock = threading.Lock()
        self.running: Held | None = None
        self._canceled: str | None = None
        self.instance_failures = 0
        self.speed_window: collections.deque[tuple[float, float]] = collections.deque(maxlen=settings.speed_window)
        self.name = worker_name()

    # --- lifecycle -------------------------------------------------------------------------

    def stop(self, reason: str = "stop requested") -> None:
        """Stop receiving; the running prediction has SALADCOG_STOP_GRACE seconds to finish."""
        if not self.stopping.is_set():
            log.info("stopping: %s", reason)
            self.stop_deadline = time.monotonic() + self.settings.stop_grace_s
            self.stopping.set()

    def _fail(self, code: int, reason: str) -> None:
        self.exit_code = self.exit_code or code
        self.stop(reason)

    def run(self) -> int:
        """Work until stopped; return the exit status (0, or why the node should be replaced)."""
        if not self._wait_for_server(START_TIMEOUT_S):
            return self.exit_code
        self._sweep()
        threads = [threading.Thread(target=self._fetch_loop, name=f"fetch-{i}", daemon=True)
                   for i in range(self.settings.fetch_threads)]
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)
        for thread in (*threads, heartbeat, reporter):
            thread.start()
        log.info("worker %s: queue %s -> %s, Cog at %s", self.name, self.settings.queue_url,
                 self.settings.results_url, self.settings.cog_url)
        try:
            while not self.stopping.is_set():
                try:
                    held = self.ready.get(timeout=WAIT_STEP_S)
                except queue.Empty:
                    continue
                if self.stopping.is_set():
                    self._give_back(held, "stopping")
                    break
                self._run_one(held)
        finally:
            self.stop()
            # Fetchers end within one long poll; what they still hold goes back to the queue.
            for thread in threads:
                thread.join(self.settings.poll_wait_s + self.settings.stall_s + 5)
            while True:
                try:
                    self._give_back(self.ready.get_nowait(), "stopping")
                except queue.Empty:
                    break
            self.outcomes.put(None)
            reporter.join(max(1.0, self.stop_deadline - time.monotonic()) + 30)
            with self._held_lock:
                left = list(self.held.values())
            for held in left:
                self._give_back(held, "stopping")
            self.cog.close()
            log.info("worker stopped (exit %d); budget peak %d files, %d bytes",
                     self.exit_code, self.budget.peak_files, self.budget.peak_bytes)
        return self.exit_code

    def _health(self) -> str:
        """The Cog server's /health-check status, or why there is none."""
        try:
            status = self.cog.http.get("/health-check", timeout=5.0).json().get("status")
            return str(status or "")
        except (httpx.HTTPError, ValueError, AttributeError) as e:
            return f"unreachable ({type(e).__name__})"

    def _wait_for_server(self, timeout: float) -> bool:
        """Wait until the Cog server says READY; False (and the node fails) if it cannot be."""
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self._health()
            if status == "READY":
                return True
            if status in ("SETUP_FAILED", "DEFUNCT", "UNHEALTHY"):  # coglet's final states
                break
            if self.stopping.wait(WAIT_STEP_S):
                return False
        self._fail(EXIT_INSTANCE_FAILURES, f"the Cog server at {self.settings.cog_url} is {status or 'not READY'}")
        return False

    def _sweep(self) -> None:
        """Remove what an earlier worker on this node left behind when it was killed: its
        downloads, and the links to files it had lent (dangling: their process is gone)."""
        shutil.rmtree(self.settings.work_dir, ignore_errors=True)
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        for entry in handoff.private_dir().iterdir():
            if entry.is_symlink() and not entry.exists():
                entry.unlink(missing_ok=True)

    # --- the queue -------------------------------------------------------------------------

    def _receive(self) -> Held | None:
        try:
            answer = self.sqs.receive_message(
                QueueUrl=self.settings.queue_url, MaxNumberOfMessages=1,
                WaitTimeSeconds=self.settings.poll_wait_s, VisibilityTimeout=self.settings.visibility_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            log.warning("receiving from %s failed: %s", self.settings.queue_url, e)
            self.stopping.wait(WAIT_STEP_S * 4)
            return None
        messages = answer.get("Messages") or []
        if not messages:
            return None
        message = messages[0]
        held = Held(message["MessageId"], message["ReceiptHandle"], message.get("Body", ""),
                    int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
        with self._held_lock:
            self.held[held.message_id] = held
        return held

    def _let_go(self, held: Held) -> bool:
        """Stop holding the message (no more heartbeats for it), free its file and slot; False
        if it was let go already."""
        with self._held_lock:  # the heartbeat sends under this lock: none goes out after this
            if self.held.pop(held.message_id, None) is None:
                return False
        if held.path is not None:
            held.path.unlink(missing_ok=True)
        self.budget.release(held.size)
        held.size = 0
        return True

    def _give_back(self, held: Held, why: str) -> None:
        """Make the message visible again now, for any worker."""
        if not self._let_go(held):
            return
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.settings.queue_url, ReceiptHandle=held.receipt, VisibilityTimeout=0)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            log.warning("could not return message %s (%s): it comes back when its visibility ends", held.message_id, e)
        log.info("returned %s to the queue: %s", held.job.result if held.job else held.message_id, why)

    def _delete(self, held: Held) -> None:
        if not self._let_go(held):
            return
        try:
            self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=held.receipt)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            # The result is stored: a redelivery finds it and deletes the message then.
            log.warning("could not delete message %s: %s", held.message_id, e)

    def _heartbeat_loop(self) -> None:
        next_beat = 0.0
        while not (self.stopping.is_set() and not self.held):
            self.stopping.wait(min(self.settings.heartbeat_s, WAIT_STEP_S))
            self._cancel_after_grace()
            now = time.monotonic()
            if now < next_beat:
                continue
            next_beat = now + self.settings.heartbeat_s
            # Under the lock: a message given back meanwhile must not be hidden again by a
            # heartbeat sent after its visibility was set to 0.
            with self._held_lock:
                self._extend(list(self.held.values()))

    def _extend(self, held: list[Held]) -> None:
        for start in range(0, len(held), 10):  # SQS takes 10 entries per batch
            entries = [{"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": self.settings.visibility_s}
                       for i, h in enumerate(held[start:start + 10])]
            try:
                answer = self.sqs.change_message_visibility_batch(QueueUrl=self.settings.queue_url, Entries=entries)
                for failed in answer.get("Failed", []):
                    log.warning("heartbeat for a message failed: %s", failed.get("Message"))
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                log.warning("heartbeat failed: %s", e)

    def _cancel_after_grace(self) -> None:
        running = self.running
        if running is None or running.job is None or time.monotonic() < self.stop_deadline:
            return
        prediction_id = running.job.prediction_id
        if self._canceled == prediction_id:
            return
        self._canceled = prediction_id
        log.info("stop grace over: canceling prediction %s", prediction_id)
        try:
            with Client(self.settings.cog_url, timeout=10.0, retry=RetryPolicy(attempts=2)) as client:
                client.cancel(prediction_id)
        except ClientError as e:
            log.warning("cancel failed: %s", e)

    # --- fetching --------------------------------------------------------------------------

    def _fetch_loop(self) -> None:
        fetcher = Fetcher(self.settings.limits, self.settings.stall_s, self.budget, self.stopping,
                          s3_client=self.s3, transport=self.transport)
        while not self.stopping.is_set():
            if not self.budget.take_slot(WAIT_STEP_S):
                continue
            held = self._receive()
            if held is None:
                self.budget.release(0)
                continue
            if self.stopping.is_set():
                self._give_back(held, "stopping")
                continue
            self._prepare(held, fetcher)

    def _prepare(self, held: Held, fetcher: Fetcher) -> None:
        """Download the message's input, then queue it for the server, or settle it at once."""
        try:
            held.job = Job.parse(held.body)
        except MessageError as e:
            # Left to the redrive policy: after N receives it is in the dead-letter queue.
            log.error("message %s is not a job (%s): left for the dead-letter queue", held.message_id, e)
            self._give_back(held, "not a job")
            return
        try:
            if self.results.exists(held.job.result):
                log.info("already stored: %s", held.job.result)
                self._delete(held)
                return
        except StorageError as e:
            self._give_back(held, f"cannot check the results: {e}")
            return
        suffix = Path(held.job.name).suffix  # FFmpeg guesses a few formats by it
        held.path = self.settings.work_dir / (uuid.uuid4().hex + (suffix if _SUFFIX.fullmatch(suffix) else ""))
        try:
            held.size = fetcher.download(held.job.source, held.path)
        except InputFailure as e:
            held.path = None
            self._record_failure(held, str(e))
        except TransientFailure as e:
            held.path = None
            self._give_back(held, f"{e} (receive {held.receives})")
        except Stopped:
            held.path = None
            self._give_back(held, "stopping")
        except Exception as e:  # anything unforeseen: the job is not lost, it comes back
            held.path = None
            log.exception("fetching %s failed", describe(held.job.source))
            self._give_back(held, f"fetch failed: {e}")
        else:
            self.ready.put(held)

    # --- the server ------------------------------------------------------------------------

    def _run_one(self, held: Held) -> None:
        job = held.job
        assert job is not None and held.path is not None
        self.running = held
        started = time.monotonic()
        log.info("predicting %s as %s", job.result, job.prediction_id)
        try:
            with handoff.lend(held.path, job.name) as handle:
                prediction = self.cog.predict({**job.inputs, "audio": handle}, prediction_id=job.prediction_id)
        except PredictionError as e:
            if e.prediction.status == "canceled" and self.stopping.is_set():
                self._give_back(held, "canceled at stop")
            else:
                self._server_said_no(held, runner_message(e.prediction.error or e.prediction.status))
            return
        except ClientError as e:
            self._server_said_no(held, str(e))
            return
        finally:
            log.info("prediction %s ended after %.3f s", job.prediction_id, time.monotonic() - started)
            self.running = None
            held.path.unlink(missing_ok=True)  # the prediction is over: the file is not needed
            self.budget.release(held.size, slot=False)
            held.size = 0
            held.path = None
        self.instance_failures = 0
        seconds = time.monotonic() - started
        output = prediction.output
        record = self._record(job, "succeeded", output=output, seconds=round(seconds, 3))
        subtitles = output.get("transcription") if job.subtitles and isinstance(output, dict) else None
        self.outcomes.put(Outcome(held, record, subtitles))
        self._check_speed(output, seconds)

    def _server_said_no(self, held: Held, error: str) -> None:
        """A prediction that did not succeed: the input's fault while the server stays healthy
        (a failed record), the instance's otherwise (the message goes back)."""
        status = self._health()
        if status in HEALTHY:
            self.instance_failures = 0
            self._record_failure(held, error)
            return
        self._give_back(held, f"the server is {status}: {error}")
        self.instance_failures += 1
        if self.instance_failures >= self.settings.max_instance_failures:
            self._fail(EXIT_INSTANCE_FAILURES, f"{self.instance_failures} instance failures in a row")
        elif not self._wait_for_server(self.settings.recover_s):
            self._fail(EXIT_INSTANCE_FAILURES, f"the Cog server did not recover within {self.settings.recover_s:g} s")

    def _check_speed(self, output: Any, seconds: float) -> None:
        if not self.settings.min_speed:
            return
        audio_s = (output or {}).get("metrics", {}).get("audio_seconds") if isinstance(output, dict) else None
        if not audio_s:
            return
        self.speed_window.append((float(audio_s), seconds))
        if len(self.speed_window) < self.speed_window.maxlen:
            return
        speed = sum(a for a, _ in self.speed_window) / max(sum(s for _, s in self.speed_window), 1e-9)
        if speed < self.settings.min_speed:
            self._fail(EXIT_TOO_SLOW, f"{speed:.2f}x real time over the last {len(self.speed_window)} "
                                      f"predictions, below SALADCOG_MIN_SPEED={self.settings.min_speed:g}")

    # --- results ---------------------------------------------------------------------------

    def _record(self, job: Job, status: str, **fields: Any) -> dict[str, Any]:
        return {"status": status, "input": job.source, "inputs": job.inputs, "prediction_id": job.prediction_id,
                "worker": self.name, "finished_at": time.time(), **fields}

    def _record_failure(self, held: Held, error: str) -> None:
        log.info("failed: %s: %s", held.job.result, error)
        self.outcomes.put(Outcome(held, self._record(held.job, "failed", error=error)))

    def _report_loop(self) -> None:
        while (outcome := self.outcomes.get()) is not None:
            held, job = outcome.held, outcome.held.job
            try:
                if outcome.subtitles is not None:
                    self.results.put_bytes(job.subtitles, outcome.subtitles.encode(), "text/plain; charset=utf-8")
                stored = self._put_once(job.result, outcome.record)
            except StorageError as e:
                self._give_back(held, f"storing the result failed: {e}")
                continue
            self._delete(held)
            log.info("%s %s (%s) prediction %s", "stored" if stored else "already stored", job.result,
                     outcome.record["status"], job.prediction_id)

    def _put_once(self, name: str, record: dict) -> bool:
        """Write the record as one object, only if none is there (If-None-Match: *); False when
        another worker stored it first."""
        try:
            self.s3.put_object(Bucket=self.results.bucket, Key=self.results.prefix + name, IfNoneMatch="*",
                               Body=json.dumps(record, ensure_ascii=False).encode(), ContentType="application/json")
            return True
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise StorageError(f"writing {self.results.url(name)} failed: {e}") from e
        except botocore.exceptions.BotoCoreError as e:
            raise StorageError(f"writing {self.results.url(name)} failed: {e}") from e
