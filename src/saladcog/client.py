"""Call a Cog server (local, or behind SaladCloud's gateway): sync, async with webhooks, streamed.

    client = Client("https://xyz.salad.cloud", api_key="...")
    result = client.predict({"audio": Path("talk.wav")})           # sync: under the gateway's 100 s
    with Receiver("hooks.sqlite") as rx:                            # async: anything longer
        result = client.predict_async({"audio": Path("talk.wav")}, webhook=rx.url, store=rx.store)
    for event in client.stream({"audio": Path("talk.wav")}):       # server-sent events
        ...

Every prediction is created with `PUT /predictions/{id}` and a client-chosen id. Cog treats that
PUT as idempotent while the prediction runs (a second PUT answers 202 with its state instead of
starting it again; coglet forgets a prediction once it finishes), so a request whose answer was
lost (502, 504, Salad's 524, a dropped connection) can be sent again without running twice at
once. Answers that prove nothing ran (409 busy, 429, 503 not ready, a refused connection) are
retried for any request; the ambiguous ones only for idempotent requests.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import mimetypes
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from saladcog.cogwire import WEBHOOK_EVENTS as EVENTS
from saladcog.cogwire import data_uri, data_uris, decode_data_uri, error_text, runner_message

# The gateway answers 524 when the container has not answered within 100 s.
GATEWAY_TIMEOUT_SECONDS = 100.0
# Nothing ran: the server was busy (409), rate limited (429) or not ready (503).
NOT_RUN = frozenset({409, 429, 503})
# The request may have reached the server before the answer was lost.
MAYBE_RAN = frozenset({502, 504, 524})
# predict_async: resend an async PUT after this long without its completed webhook.
RESEND_AFTER_SECONDS = 30.0


class ClientError(RuntimeError):
    """A request the server refused or that could not be delivered; the message says why."""


class PredictionError(ClientError):
    """The prediction ran and ended failed or canceled; `.prediction` holds its final state.
    The message says "failed" once, with the runner's own words (`.prediction.error` is as sent)."""

    def __init__(self, prediction: Prediction):
        self.prediction = prediction
        error = runner_message(prediction.error or "")
        super().__init__(f"prediction {prediction.id} {prediction.status}: {error}".rstrip(": "))


@dataclasses.dataclass
class Prediction:
    id: str
    status: str
    output: Any = None
    error: str | None = None
    logs: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict) -> Prediction:
        return cls(
            id=body.get("id", ""),
            status=body.get("status", ""),
            output=body.get("output"),
            error=body.get("error"),
            logs=body.get("logs") or "",
            metrics=body.get("metrics") or {},
        )

    def check(self) -> Prediction:
        if self.status != "succeeded":
            raise PredictionError(self)
        return self


@dataclasses.dataclass(frozen=True)
class StreamEvent:
    """One server-sent event: start, output ({"chunk", "index"}), log, metric, completed, error."""

    event: str
    data: Any


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries for 429/502/503/504/524 and lost connections
    busy_wait: float = 600.0  # seconds to keep retrying 409 (every slot busy): waiting for a slot
    backoff: float = 0.25  # first pause; doubles each try, with jitter, up to backoff_max
    backoff_max: float = 8.0
    # A slot frees the moment its prediction ends: poll for it often, or it idles between.
    busy_backoff_max: float = 1.0

    def pause(self, attempt: int, retry_after: str | None = None, busy: bool = False) -> float:
        cap = self.busy_backoff_max if busy else self.backoff_max
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), cap)
        return min(cap, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class SyncRule:
    """When a sync request fits the gateway's 100 s: estimated seconds ≤ `budget`.

    estimate = upload time + audio seconds × real-time factor. The default factor, 0.15, is a
    pessimistic Whisper large-v3 (beam 5) on a consumer GPU; with the 50 s budget (half the
    gateway's limit, for queueing and cold caches) sync covers audio up to about 5 minutes."""

    real_time_factor: float = 0.15
    upload_bytes_per_second: float = 2_000_000.0
    budget: float = GATEWAY_TIMEOUT_SECONDS / 2

    def estimate(self, audio_seconds: float, upload_bytes: int = 0) -> float:
        return upload_bytes / self.upload_bytes_per_second + audio_seconds * self.real_time_factor

    def fits(self, audio_seconds: float, upload_bytes: int = 0) -> bool:
        return self.estimate(audio_seconds, upload_bytes) <= self.budget


def _async_request(inputs: dict[str, Any], webhook: str, events: tuple[str, ...], prediction_id: str) -> dict:
    unknown = set(events) - set(EVENTS)
    if unknown:
        raise ClientError(f"unknown webhook events {sorted(unknown)}: choose from {', '.join(EVENTS)}")
    return {
        "id": prediction_id,
        "input": encode_inputs(inputs),
        "webhook": webhook,
        "webhook_events_filter": list(events),
    }


def encode_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Local files (`Path`) go inline as data URIs; strings (URLs included) go as they are."""

    def encode(value):
        if isinstance(value, Path):
            if not value.is_file():
                raise ClientError(f"input file {value} does not exist")
            return data_uri(value)
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        return value

    return {name: encode(value) for name, value in inputs.items()}


def write_files(output: Any, dest: Path) -> Any:
    """Write every data-URI file in `output` next to `dest` and put the paths in their place.

    One file goes to `dest` itself; several go to `dest`'s stem plus an index (out.0.wav, …),
    each with the extension of its MIME type when `dest` has none."""
    uris = data_uris(output)
    paths: dict[int, Path] = {}
    for index, uri in enumerate(uris):
        try:
            mime, data = decode_data_uri(uri)
        except ValueError as e:
            raise ClientError(str(e)) from None
        suffix = dest.suffix or mimetypes.guess_extension(mime) or ""
        path = dest.with_suffix(suffix) if len(uris) == 1 else dest.with_name(f"{dest.stem}.{index}{suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[index] = path
    counter = iter(range(len(uris)))

    def replace(value):
        if isinstance(value, str) and value.startswith("data:"):
            return str(paths[next(counter)])
        if isinstance(value, list):
            return [replace(v) for v in value]
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        return value

    return replace(output)


def parse_sse(lines: Iterator[str]) -> Iterator[StreamEvent]:
    """Server-sent events from text lines (the `event:` / `data:` fields; comments skipped)."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield StreamEvent(event, json.loads("\n".join(data)))
            event, data = "message", []
        elif line.startswith(":"):
            continue  # keep-alive comment
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield StreamEvent(event, json.loads("\n".join(data)))


def _json_object(response: httpx.Response, what: str) -> dict:
    """The answer's JSON object, or a ClientError that says what came back instead (an HTML page
    from a proxy, a JSON list, …): a Cog server answers every request with a JSON object."""
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past the parser's depth
        snippet = " ".join(response.text[:80].split())
        raise ClientError(
            f"{what}: {response.request.url} answered HTTP {response.status_code} with {kind} that is not JSON"
            f" ({snippet!r}): is this a Cog server?"
        ) from None
    if not isinstance(body, dict):
        raise ClientError(
            f"{what}: {response.request.url} answered HTTP {response.status_code} with a JSON"
            f" {type(body).__name__}, not the object a Cog server sends: is this a Cog server?"
        )
    return body


class Client:
    """One Cog server, reached at `url` (`http://[::1]:5000`, `https://xyz.salad.cloud`)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self.url = url.rstrip("/")
        self.retry = retry
        self.retried: collections.Counter[str] = collections.Counter()  # reason → retries, for reports
        headers = {"Salad-Api-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool,
        stream: bool = False,
        in_flight_is_busy: bool = False,
    ) -> httpx.Response:
        """Send with bounded retries; return the first answer that is not retried.

        `in_flight_is_busy`: a 202 to a sync PUT means an earlier try of the same id still runs
        (its connection dropped and Cog is canceling it): wait for it like for a 409."""
        request = self.http.build_request(method, path, json=body, headers=headers)
        started, attempt, busy_tries = time.monotonic(), 0, 0
        while True:
            try:
                response = self.http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                # Never reached the server: safe to resend anything.
                kind, reason, response = "connect", f"cannot connect to {self.url}: {e}", None
            except httpx.TransportError as e:
                if not idempotent:
                    raise ClientError(f"{method} {path}: connection lost, not retried (may have run): {e}") from e
                kind, reason, response = "connection lost", f"connection lost: {e!r}", None
            if response is not None:
                status = response.status_code
                busy = status == 409 or (in_flight_is_busy and status == 202)
                retryable = busy or status in NOT_RUN or (idempotent and status in MAYBE_RAN)
                if not retryable:
                    return response
                kind = reason = f"HTTP {status}"
                retry_after = response.headers.get("retry-after")
                response.close()
            else:
                busy, retry_after = False, None
            self.retried[kind] += 1
            if busy:
                # Bounded by time, not tries: a busy slot frees when its prediction ends.
                if time.monotonic() - started > self.retry.busy_wait:
                    raise ClientError(f"{method} {path}: server busy for {self.retry.busy_wait:.0f} s ({reason})")
                busy_tries += 1
                time.sleep(self.retry.pause(min(busy_tries, 10), retry_after, busy=True))
            else:
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise ClientError(f"{method} {path}: gave up after {attempt} tries ({reason})")
                time.sleep(self.retry.pause(attempt, retry_after))

    def _check(self, response: httpx.Response, what: str) -> dict:
        if response.status_code in (401, 403):
            raise ClientError(f"{what}: HTTP {response.status_code} — wrong or missing Salad-Api-Key? {error_text(response.content)}")
        if response.status_code == 422:
            raise ClientError(f"{what}: invalid input: {error_text(response.content)}")
        if response.status_code >= 400:
            raise ClientError(f"{what}: HTTP {response.status_code}: {error_text(response.content)}")
        return _json_object(response, what)

    def schema(self) -> dict:
        """The server's OpenAPI document (input names, types, bounds)."""
        return self._check(self._send("GET", "/openapi.json", idempotent=True), "GET /openapi.json")

    def predict(self, inputs: dict[str, Any], *, prediction_id: str | None = None) -> Prediction:
        """Run a prediction and wait for its answer on the same connection (keep it under 100 s
        behind the gateway). Raises PredictionError if it failed."""
        prediction_id = prediction_id or uuid.uuid4().hex
        response = self._send(
            "PUT",
            f"/predictions/{prediction_id}",
            body={"id": prediction_id, "input": encode_inputs(inputs)},
            idempotent=True,
            in_flight_is_busy=True,
        )
        return Prediction.from_json(self._check(response, f"prediction {prediction_id}")).check()

    def submit(
        self,
        inputs: dict[str, Any],
        *,
        webhook: str,
        events: tuple[str, ...] = EVENTS,
        prediction_id: str | None = None,
    ) -> str:
        """Start an async prediction (`Prefer: respond-async`); its state goes to `webhook`.
        Returns the prediction id. Only the `completed` webhook is retried by Cog."""
        return self._submit(_async_request(inputs, webhook, events, prediction_id or uuid.uuid4().hex))

    def _submit(self, body: dict) -> str:
        response = self._send(
            "PUT", f"/predictions/{body['id']}", body=body, headers={"Prefer": "respond-async"}, idempotent=True
        )
        self._check(response, f"prediction {body['id']}")
        return body["id"]

    def predict_async(
        self,
        inputs: dict[str, Any],
        *,
        webhook: str,
        store,
        timeout: float = 3600.0,
        events: tuple[str, ...] = EVENTS,
        prediction_id: str | None = None,
        resend_after: float | None = RESEND_AFTER_SECONDS,
    ) -> Prediction:
        """Submit, then wait until the receiver writing `store` (a webhooks.EventStore) has the
        completed webhook. Raises PredictionError if it failed or was canceled.

        A Cog server that stops (SIGTERM: Salad moves instances all the time) drops a running
        async prediction without a completed webhook. So after every `resend_after` seconds
        without it, the same PUT goes again: a server still running that id answers 202 and
        starts nothing; a server that no longer knows it (restarted, or a new instance) runs it
        again under the same id. The receiver keeps the first completed event of an id, so the
        caller gets one result. None: never resend."""
        if resend_after is not None and not resend_after > 0:
            raise ClientError(f"resend_after must be a positive number of seconds or None, got {resend_after}")
        body = _async_request(inputs, webhook, events, prediction_id or uuid.uuid4().hex)
        prediction_id = self._submit(body)
        deadline = time.monotonic() + timeout
        while True:
            wait = deadline - time.monotonic()
            if resend_after is not None:
                wait = min(wait, resend_after)
            try:
                return Prediction.from_json(store.wait_completed(prediction_id, max(wait, 0.0))).check()
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise ClientError(
                        f"prediction {prediction_id}: no completed webhook within {timeout:.0f} s"
                    ) from None
            self._resend(body)

    def _resend(self, body: dict) -> None:
        """One try of an async PUT again, no retries: whatever goes wrong, the next try comes
        `resend_after` seconds later (a server down now may be back by then)."""
        try:
            # An async PUT is answered at once; a server that is stopping may accept and never answer.
            response = self.http.put(
                f"/predictions/{body['id']}", json=body, headers={"Prefer": "respond-async"}, timeout=10.0
            )
        except httpx.TransportError:
            self.retried["resend: no answer"] += 1
            return
        response.close()
        self.retried[f"resend: HTTP {response.status_code}"] += 1

    def cancel(self, prediction_id: str) -> bool:
        """Ask the server to cancel a running prediction; False if it has none with that id."""
        response = self._send("POST", f"/predictions/{prediction_id}/cancel", idempotent=True)
        if response.status_code == 404:
            return False
        self._check(response, f"cancel {prediction_id}")
        return True

    def stream(self, inputs: dict[str, Any], *, prediction_id: str | None = None) -> Iterator[StreamEvent]:
        """Run a prediction and yield its server-sent events as they happen, up to `completed`.
        Needs a runner marked `@cog.streaming` (406 otherwise)."""
        prediction_id = prediction_id or uuid.uuid4().hex
        response = self._send(
            "PUT",
            f"/predictions/{prediction_id}",
            body={"id": prediction_id, "input": encode_inputs(inputs)},
            headers={"Accept": "text/event-stream"},
            idempotent=True,
            stream=True,
        )
        try:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
                self._check(response, f"stream {prediction_id}")
                raise ClientError(f"stream {prediction_id}: HTTP {response.status_code} is not an event stream")
            yield from parse_sse(response.iter_lines())
        finally:
            response.close()

    def stream_output(self, inputs: dict[str, Any], **kwargs) -> Iterator[Any]:
        """The output chunks of `stream` (for WhisperStream: segments as they are decoded).
        Raises PredictionError if the prediction ends failed or canceled."""
        for event in self.stream(inputs, **kwargs):
            if event.event == "output":
                yield event.data["chunk"]
            elif event.event == "error":
                raise ClientError(f"stream broken: {event.data.get('error')}")
            elif event.event == "completed":
                Prediction.from_json(event.data).check()
                return
        raise ClientError("stream ended before the prediction completed")
