"""Download one job's input to local disk: streamed, within saladcog's input limits, counted
against the prefetch budget.

Failures come in two kinds. `InputFailure`: the input itself cannot be had (404, 410, 403, larger
than SALADCOG_MAX_INPUT_BYTES, no such S3 object); retrying will not help, so the job gets a
failed result. `TransientFailure`: the network or the server let us down (5xx, 429, a refused
connection, a stall, a download slower than SALADCOG_FETCH_TIMEOUT); the message goes back to
the queue, and the queue's redrive policy ends a job that keeps failing in the dead-letter queue.

`transport`, when given, makes the httpx transport of one download from its deadline: the
place for a check of every address a download connects to (the first request and each
redirect): `saladcog.inputs.checked_transport`, which refuses a private address by raising
`AddressRefused` (an input failure).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import botocore.exceptions
import httpx

from saladcog.addresses import ALLOW_ENV
from saladcog.inputs import AddressRefused, Limits, SentFile
from saladcog.storage import Location, Storage, StorageError
from saladcog.worker.prefetch import Budget

CHUNK_BYTES = 1 << 20
# Ask again this often while waiting for room in the budget, to notice a stop.
WAIT_STEP_S = 0.5
MAX_REDIRECTS = 5
# HTTP answers that say "not now" rather than "never".
TRANSIENT_STATUS = frozenset({408, 425, 429})


class InputFailure(Exception):
    """The input cannot be had; the message names it as the job did."""


class TransientFailure(Exception):
    """Fetching failed for a reason that may pass."""


class Stopped(Exception):
    """The worker is stopping: the download was abandoned."""


def describe(source: str) -> str:
    """The input as messages name it: an s3:// URL as is; an http(s) URL without its query
    or credentials (a presigned URL's query is a secret)."""
    return source if source.startswith("s3://") else SentFile(source).describe("input")


class Fetcher:
    """One fetcher thread's downloads: httpx for http(s), boto3 for s3://."""

    def __init__(self, limits: Limits, stall_s: float, budget: Budget, stopping: threading.Event,
                 s3_client=None, transport: Callable[[float], httpx.BaseTransport] | None = None):
        self.limits = limits
        self.stall_s = stall_s
        self.budget = budget
        self.stopping = stopping
        self.s3_client = s3_client
        self.transport = transport

    def _reserve(self, size: int) -> None:
        while not self.budget.reserve(size, WAIT_STEP_S):
            if self.stopping.is_set():
                raise Stopped()

    def download(self, source: str, path: Path) -> int:
        """Write `source` to `path`; return the bytes counted in the budget (the caller releases
        them when the file is gone). On any failure the file is removed and its bytes released."""
        counted = [0]
        try:
            if source.startswith("s3://"):
                self._download_s3(source, path, counted)
            else:
                self._download_http(source, path, counted)
        except BaseException:
            path.unlink(missing_ok=True)
            self.budget.release(counted[0], slot=False)
            raise
        return counted[0]

    def _too_large(self, name: str) -> InputFailure:
        return InputFailure(
            f"{name} is larger than {self.limits.max_bytes:,} bytes, the most this worker takes "
            "(SALADCOG_MAX_INPUT_BYTES)")

    def _download_http(self, url: str, path: Path, counted: list[int]) -> None:
        name = describe(url)
        deadline = time.monotonic() + self.limits.fetch_seconds
        client = httpx.Client(
            transport=self.transport(deadline) if self.transport else None, timeout=httpx.Timeout(self.stall_s),
            follow_redirects=True, max_redirects=MAX_REDIRECTS, trust_env=False,
            headers={"Accept-Encoding": "identity", "User-Agent": "saladcog-worker"},
        )
        try:
            with client, client.stream("GET", url) as response:
                status = response.status_code
                if status >= 400:
                    reason = f"could not fetch {name}: the server answered HTTP {status} {response.reason_phrase}".rstrip()
                    if status >= 500 or status in TRANSIENT_STATUS:
                        raise TransientFailure(reason)
                    raise InputFailure(reason)
                length = response.headers.get("content-length", "")
                declared = int(length) if length.isdigit() else None
                if declared is not None and declared > self.limits.max_bytes:
                    raise self._too_large(name)
                self._reserve(declared or 0)
                counted[0] = declared or 0
                received = 0
                with path.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK_BYTES):
                        received += len(chunk)
                        if received > self.limits.max_bytes:
                            raise self._too_large(name)
                        if received > counted[0]:
                            self.budget.grow(received - counted[0])
                            counted[0] = received
                        if self.stopping.is_set():
                            raise Stopped()
                        if time.monotonic() > deadline:
                            raise TransientFailure(
                                f"could not fetch {name}: it took longer than {self.limits.fetch_seconds:g} s "
                                f"({received:,} bytes received; SALADCOG_FETCH_TIMEOUT)")
                        out.write(chunk)
        except AddressRefused:
            raise InputFailure(f"could not fetch {name}: its address is not allowed ({ALLOW_ENV})") from None
        except httpx.TimeoutException as e:
            raise TransientFailure(f"could not fetch {name}: the server sent nothing for "
                                   f"{self.stall_s:g} s ({type(e).__name__})") from None
        except httpx.TooManyRedirects:
            raise InputFailure(f"could not fetch {name}: more than {MAX_REDIRECTS} redirects") from None
        except httpx.HTTPError as e:  # refused, reset, a body shorter than its Content-Length
            raise TransientFailure(f"could not fetch {name}: {e}") from None

    def _download_s3(self, url: str, path: Path, counted: list[int]) -> None:
        location = Location.parse(url)
        store = Storage(location.bucket, "", self.s3_client)
        try:
            size = store.client.head_object(Bucket=location.bucket, Key=location.key)["ContentLength"]
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied"):
                raise InputFailure(f"could not fetch {url}: {'no such object' if code.startswith(('404', 'No', 'Not')) else 'access denied'}") from None
            raise TransientFailure(f"could not fetch {url}: {e}") from None
        except botocore.exceptions.BotoCoreError as e:
            raise TransientFailure(f"could not fetch {url}: {e}") from None
        if size > self.limits.max_bytes:
            raise self._too_large(url)
        self._reserve(size)
        counted[0] = size
        try:
            store.download(location.key, path, self.limits.max_bytes)
        except StorageError as e:
            raise TransientFailure(str(e)) from None
