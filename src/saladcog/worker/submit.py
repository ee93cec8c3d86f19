"""The submitting side: turn inputs into queue messages, watch the progress, collect the results.

    create_queue(sqs, "talks")                   # and its dead-letter queue, with a redrive policy
    jobs = folder_jobs(Path("talks/"), uploads)  # each file uploaded first; or url_jobs, s3_jobs
    submit(sqs, queue_url, jobs, results)        # inputs that have a result already are skipped
    progress(sqs, queue_url, results)            # counts from the queue and from storage
    collect(results, Path("out/"))               # results into a folder

Resumable: a job whose result is stored is never sent again, and an input already uploaded with
the same size is not uploaded again.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from saladcog.batch import MEDIA_SUFFIXES
from saladcog.storage import Storage
from saladcog.worker.jobs import Job, result_name

DLQ_SUFFIX = "-dlq"
# The seed's queue kept messages two days; SQS allows up to 14.
RETENTION_S = 2 * 24 * 3600
RESULT_SUFFIXES = (".json", ".srt", ".vtt")


def _queue_attributes(fifo: bool, extra: dict[str, str]) -> dict[str, str]:
    attributes = {"MessageRetentionPeriod": str(RETENTION_S), **extra}
    if fifo:
        attributes["FifoQueue"] = "true"
    return attributes


def create_queue(sqs, name: str, *, fifo: bool = False, max_receives: int = 5, visibility_s: int = 30) -> str:
    """Create the queue `name` and `<name>-dlq` (FIFO names end with .fifo), the first sending a
    message to the second after `max_receives` receives; return the queue's URL. Creating a
    queue that exists with the same attributes is a no-op in SQS."""
    base = name.removesuffix(".fifo")
    fifo = fifo or name.endswith(".fifo")
    suffix = ".fifo" if fifo else ""
    dlq_url = sqs.create_queue(QueueName=f"{base}{DLQ_SUFFIX}{suffix}",
                               Attributes=_queue_attributes(fifo, {}))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})
    return sqs.create_queue(QueueName=f"{base}{suffix}", Attributes=_queue_attributes(
        fifo, {"VisibilityTimeout": str(visibility_s), "RedrivePolicy": redrive}))["QueueUrl"]


def queue_url(sqs, name_or_url: str) -> str:
    if name_or_url.startswith(("http://", "https://")):
        return name_or_url
    return sqs.get_queue_url(QueueName=name_or_url)["QueueUrl"]


def url_jobs(urls: Iterable[str], inputs: dict[str, Any]) -> list[Job]:
    return [Job(url, inputs, result_name(url)) for url in dict.fromkeys(urls)]


def url_list(path: Path) -> list[str]:
    """One http(s) or s3:// URL a line; blank lines and # comments skipped."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    urls = [line for line in lines if line and not line.startswith("#")]
    bad = [u for u in urls if not u.startswith(("http://", "https://", "s3://"))]
    if bad:
        raise ValueError(f"{path}: not http(s) or s3:// URLs: {', '.join(bad[:3])}")
    return urls


def _media(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if Path(n).suffix.lower() in MEDIA_SUFFIXES)


def s3_jobs(prefix_url: str, inputs: dict[str, Any], s3=None) -> list[Job]:
    """Every media object under an s3:// prefix."""
    store = Storage.from_url(prefix_url, client=s3)
    return url_jobs((store.url(n) for n in _media(store.names())), inputs)


def folder_jobs(folder: Path, uploads: Storage, inputs: dict[str, Any]) -> list[Job]:
    """Every media file under `folder`, uploaded to `uploads` first (skipped when an object of
    the same size is there already)."""
    files = _media(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"no media files ({', '.join(sorted(MEDIA_SUFFIXES))}) under {folder}")
    return url_jobs([uploads.upload(name, folder / name) for name in files], inputs)


@dataclasses.dataclass(frozen=True)
class Submitted:
    sent: int
    skipped: int  # a result is stored already


def submit(sqs, url: str, jobs: list[Job], results: Storage) -> Submitted:
    """Send one message per job that has no result yet (batches of 10, SQS's most)."""
    todo = [job for job in jobs if not results.exists(job.result)]
    fifo = url.endswith(".fifo")
    for start in range(0, len(todo), 10):
        entries = []
        for i, job in enumerate(todo[start:start + 10]):
            entry = {"Id": str(i), "MessageBody": job.body()}
            if fifo:
                # One group per job: a group with a message in flight holds back the rest of
                # its group, so a shared group would let one worker run at a time.
                entry |= {"MessageGroupId": job.prediction_id, "MessageDeduplicationId": job.prediction_id}
            entries.append(entry)
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if answer.get("Failed"):
            reasons = "; ".join(f.get("Message", f.get("Code", "")) for f in answer["Failed"])
            raise RuntimeError(f"SQS refused {len(answer['Failed'])} messages: {reasons}")
    return Submitted(sent=len(todo), skipped=len(jobs) - len(todo))


@dataclasses.dataclass(frozen=True)
class Progress:
    waiting: int  # visible in the queue
    in_flight: int  # received by a worker, not yet deleted
    dead: int  # in the dead-letter queue
    stored: int  # results in storage
    recent: int  # results stored within `window_s`
    window_s: float

    @property
    def total(self) -> int:
        return self.waiting + self.in_flight + self.dead + self.stored

    @property
    def eta_s(self) -> float | None:
        left = self.waiting + self.in_flight
        if not left:
            return 0.0
        return left * self.window_s / self.recent if self.recent else None

    def line(self, width: int = 30) -> str:
        filled = int(width * self.stored / max(self.total, 1))
        eta = self.eta_s
        eta_text = "unknown" if eta is None else str(datetime.timedelta(seconds=round(eta)))
        return (f"[{'#' * filled}{'.' * (width - filled)}] {self.stored}/{self.total} stored, "
                f"{self.waiting} waiting, {self.in_flight} in flight, {self.dead} dead-lettered; "
                f"{self.recent / self.window_s * 3600:.0f}/h, ETA {eta_text}")


def _counts(sqs, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    values = attributes["Attributes"]
    return int(values["ApproximateNumberOfMessages"]), int(values["ApproximateNumberOfMessagesNotVisible"])


def dead_letter_url(sqs, url: str) -> str | None:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    if "RedrivePolicy" not in attributes:
        return None
    name = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[1]
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


def _stored(results: Storage) -> Iterator[tuple[str, datetime.datetime]]:
    pages = results.client.get_paginator("list_objects_v2").paginate(Bucket=results.bucket, Prefix=results.prefix)
    for page in pages:
        for item in page.get("Contents", []):
            yield item["Key"][len(results.prefix):], item["LastModified"]


def progress(sqs, url: str, results: Storage, window_s: float = 600.0) -> Progress:
    """Counts from the queue, its dead-letter queue and the results; the rate over the last
    `window_s` seconds of results gives the ETA."""
    waiting, in_flight = _counts(sqs, url)
    dlq = dead_letter_url(sqs, url)
    dead = sum(_counts(sqs, dlq)) if dlq else 0
    now = datetime.datetime.now(datetime.timezone.utc)
    stamps = [when for name, when in _stored(results) if name.endswith(".json")]
    recent = sum(1 for when in stamps if (now - when).total_seconds() <= window_s)
    return Progress(waiting, in_flight, dead, len(stamps), recent, window_s)


def collect(results: Storage, out_dir: Path) -> int:
    """Download every result (.json, and .srt/.vtt subtitles) not yet in `out_dir`; return how
    many were downloaded. Subtitles count only beside their JSON: a worker writes them first, so
    alone they are what a crash left between the two writes."""
    count = 0
    root = out_dir.resolve()
    names = [name for name in results.names() if name.endswith(RESULT_SUFFIXES)]
    done = {name for name in names if name.endswith(".json")}
    for name in names:
        if name not in done and f"{name.rsplit('.', 1)[0]}.json" not in done:
            continue
        path = (root / name).resolve()
        if not path.is_relative_to(root):  # a key with ".." segments: not ours to write
            continue
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # an interrupted collect leaves no result
        results.download(name, partial, max_bytes=1 << 30)
        partial.replace(path)
        count += 1
    return count
