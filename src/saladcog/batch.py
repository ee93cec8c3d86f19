"""Transcribe a folder of media files (or a list of URLs) with N requests in flight.

Each input gets one result file, `<out>/<input's relative path>.json`, written atomically
(temporary file, fsync, rename) the moment its prediction succeeds, and one line in
`<out>/manifest.jsonl`. An input whose result file exists is done: a rerun after an interruption
sends only the others. A failed prediction is recorded in the manifest (status failed, the
server's error) but writes no result, so a rerun tries it again.

Requests go through `Client`, so 409 (the server's one slot busy), 429 and 503 are retried with
backoff, and every prediction is a PUT with its own id. Inputs longer than the sync rule allows go
async through the webhook receiver when one is given, and fail with a clear message otherwise.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from saladcog import audio
from saladcog.client import RESEND_AFTER_SECONDS, Client, ClientError, SyncRule

MEDIA_SUFFIXES = frozenset(
    ".wav .mp3 .flac .ogg .opus .m4a .aac .wma .webm .mp4 .mkv .mov .avi".split()
)


@dataclasses.dataclass(frozen=True)
class Item:
    key: str  # relative path of a file, or the URL: names the result file
    source: Path | str  # a local file or a URL


@dataclasses.dataclass(frozen=True)
class Webhooks:
    url: str  # where the server sends webhooks
    store: Any  # webhooks.EventStore that the receiver at `url` writes


def list_inputs(source: Path) -> list[Item]:
    """A folder: its media files (recursively, sorted). A file: one URL per line (# comments)."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
        if not files:
            raise ClientError(f"no media files ({', '.join(sorted(MEDIA_SUFFIXES))}) under {source}")
        return [Item(p.relative_to(source).as_posix(), p) for p in files]
    if source.is_file():
        urls = [line.strip() for line in source.read_text().splitlines()]
        urls = [u for u in urls if u and not u.startswith("#")]
        bad = [u for u in urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ClientError(f"{source}: not http(s) URLs: {', '.join(bad[:3])}")
        return [Item(u, u) for u in dict.fromkeys(urls)]
    raise ClientError(f"{source} is neither a folder nor a file listing URLs")


# Longest file name written (NAME_MAX is 255 bytes; _write_atomic adds ~35 for its temporary name).
MAX_NAME_BYTES = 200


def _safe_segment(segment: str, suffix: str = "") -> str:
    """`segment` + `suffix` as one file name inside its folder: never empty, `.`, `..` or too long.
    Escaped with `%` (a literal `%` becomes `%25`), so distinct segments keep distinct names."""
    segment = segment.replace("%", "%25").replace("\\", "%5C").replace("\0", "%00")
    if segment + suffix in ("", ".", ".."):
        segment = segment.replace(".", "%2E") or "%"
    if len((segment + suffix).encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(segment.encode()).hexdigest()[:16]
        keep = MAX_NAME_BYTES - len(suffix.encode()) - len(digest) - 1
        segment = segment.encode()[:keep].decode(errors="ignore") + "~" + digest
    return segment + suffix


def result_path(out_dir: Path, key: str) -> Path:
    """Where the result of input `key` goes: always a file under `out_dir`, one per key.

    A URL keeps its host and path, and its file name ends in a short hash of the whole URL
    (`http://h/a/b.wav` → `h/a/b.wav~<hash>.json`): the readable part drops the scheme and turns
    `?` and `&` into `_`, so without the hash URLs that differ only there would share a file. A
    relative path keeps its name (`a/b.wav` → `a/b.wav.json`): its escaping loses nothing. Every
    segment is made safe, so `..`, an empty host (`http:///abs`) or an absolute path cannot
    leave `out_dir`."""
    suffix = ".json"
    if "://" in key:
        suffix = f"~{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
        key = key.split("://", 1)[1].replace("?", "_").replace("&", "_")
    *folders, name = key.split("/")
    return out_dir.joinpath(*(_safe_segment(f) for f in folders), _safe_segment(name, suffix))


def _leaves(out_dir: Path, path: Path) -> bool:
    """Whether `path`, its symbolic links followed, lies outside `out_dir` (a link placed
    under --out, to a folder elsewhere, would have results written there)."""
    return not path.resolve().is_relative_to(out_dir.resolve())


def _write_atomic(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Progress:
    """A one-line progress bar on stderr (a line per input when stderr is not a terminal)."""

    def __init__(self, total: int, done: int, stream=sys.stderr):
        self.total, self.done, self.failed = total, done, 0
        self.started, self.first = time.monotonic(), done
        self.stream = stream
        self.tty = stream.isatty()
        self._lock = threading.Lock()

    def update(self, key: str, ok: bool) -> None:
        with self._lock:
            self.done += ok
            self.failed += not ok
            finished = self.done + self.failed
            rate = (finished - self.first) / max(time.monotonic() - self.started, 1e-6)
            width = 30
            filled = int(width * finished / max(self.total, 1))
            line = (
                f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total}"
                f" ({self.failed} failed) {rate:.2f}/s"
            )
            if self.tty:
                self.stream.write(f"\r{line}")
            else:
                self.stream.write(f"{line} {'ok' if ok else 'FAILED'} {key}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


@dataclasses.dataclass
class Summary:
    total: int
    skipped: int  # done by an earlier run
    succeeded: int = 0
    failed: int = 0


class Batch:
    def __init__(
        self,
        client: Client,
        out_dir: Path,
        *,
        inputs: dict[str, Any] | None = None,
        input_name: str = "audio",
        in_flight: int = 4,
        rule: SyncRule = SyncRule(),
        webhooks: Webhooks | None = None,
        async_timeout: float = 3600.0,
        resend_after: float | None = RESEND_AFTER_SECONDS,
    ):
        self.client = client
        self.out_dir = out_dir
        self.inputs = dict(inputs or {})
        self.input_name = input_name
        self.in_flight = in_flight
        self.rule = rule
        self.webhooks = webhooks
        self.async_timeout = async_timeout
        self.resend_after = resend_after
        self.manifest = out_dir / "manifest.jsonl"
        self._manifest_lock = threading.Lock()

    def _record(self, entry: dict) -> None:
        with self._manifest_lock, open(self.manifest, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _too_long(self, item: Item) -> float | None:
        """The file's duration when a sync request would not fit the gateway's limit."""
        if not isinstance(item.source, Path):
            return None  # a URL: the server downloads it; its length is unknown here
        seconds = audio.probe(item.source).duration
        return None if self.rule.fits(seconds, item.source.stat().st_size) else seconds

    def _one(self, item: Item) -> dict:
        started = time.monotonic()
        prediction_id = uuid.uuid4().hex
        entry = {"input": item.key, "id": prediction_id}
        try:
            inputs = {**self.inputs, self.input_name: item.source}
            long_seconds = self._too_long(item)
            if long_seconds is None:
                prediction = self.client.predict(inputs, prediction_id=prediction_id)
            elif self.webhooks is not None:
                prediction = self.client.predict_async(
                    inputs,
                    webhook=self.webhooks.url,
                    store=self.webhooks.store,
                    events=("completed",),
                    timeout=self.async_timeout,
                    prediction_id=prediction_id,
                    resend_after=self.resend_after,
                )
            else:
                raise ClientError(
                    f"{long_seconds:.0f} s of audio: too long for a sync request through the gateway"
                    f" (estimated {self.rule.estimate(long_seconds):.0f} s > {self.rule.budget:.0f} s);"
                    " give a webhook URL to send it async"
                )
        except (ClientError, audio.AudioError) as e:
            return {**entry, "status": "failed", "error": str(e), "seconds": round(time.monotonic() - started, 3)}
        path = result_path(self.out_dir, item.key)
        try:
            if _leaves(self.out_dir, path):
                raise OSError(f"a symbolic link under {self.out_dir} leads out of it")
            _write_atomic(path, json.dumps({"input": item.key, "id": prediction.id, "output": prediction.output}, indent=1))
        except OSError as e:  # a full disk, a name another input's folder already holds, a link out
            error = f"cannot write the result to {path}: {e.strerror or e}"
            return {**entry, "status": "failed", "error": error, "seconds": round(time.monotonic() - started, 3)}
        return {
            **entry,
            "status": "succeeded",
            "result": path.relative_to(self.out_dir).as_posix(),
            "seconds": round(time.monotonic() - started, 3),
        }

    def _stored(self, item: Item) -> dict | None:
        """The result an earlier run stored for `item`: a file at its path, under --out, that
        records this input (not another's, such as one an older naming put there)."""
        path = result_path(self.out_dir, item.key)
        try:
            if _leaves(self.out_dir, path):
                return None
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return result if isinstance(result, dict) and result.get("input") == item.key else None

    def _recover(self, items: list[Item], stored: dict[str, dict]) -> None:
        """A run killed between writing a result and its manifest line: add the line now."""
        listed = set()
        if self.manifest.exists():
            listed = {json.loads(line)["input"] for line in self.manifest.read_text().splitlines() if line.strip()}
        for item in items:
            if item.key in stored and item.key not in listed:
                self._record({
                    "input": item.key, "id": stored[item.key].get("id"), "status": "succeeded",
                    "result": result_path(self.out_dir, item.key).relative_to(self.out_dir).as_posix(),
                    "recovered": True,
                })

    def run(self, items: list[Item], progress: bool = True) -> Summary:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stored = {item.key: result for item in items if (result := self._stored(item)) is not None}
        self._recover(items, stored)
        pending = [item for item in items if item.key not in stored]
        summary = Summary(total=len(items), skipped=len(items) - len(pending))
        bar = Progress(len(items), summary.skipped) if progress else None
        if summary.skipped:
            print(f"{summary.skipped} of {len(items)} already done in {self.out_dir}; sending {len(pending)}", file=sys.stderr)
        with concurrent.futures.ThreadPoolExecutor(self.in_flight) as pool:
            futures = {pool.submit(self._one, item): item for item in pending}
            try:
                for future in concurrent.futures.as_completed(futures):
                    entry = future.result()
                    self._record(entry)
                    ok = entry["status"] == "succeeded"
                    summary.succeeded += ok
                    summary.failed += not ok
                    if bar:
                        bar.update(entry["input"], ok)
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        if bar:
            bar.close()
        return summary
