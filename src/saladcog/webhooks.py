"""Receive Cog's prediction webhooks and keep them durably: a small ASGI app served by uvicorn.

Cog POSTs the prediction's state on each event (start, output, logs, completed); only the
`completed` one is retried (429/5xx or no answer: about 12 times over ~7 min), so this receiver
answers 200 only once the event is on disk (sqlite, synchronous=FULL: the commit is fsynced
before the answer), and 503 when it cannot store it, so that Cog tries again. A crash of the
receiver therefore loses nothing it acknowledged.

Dedup: Cog's retries resend the same body, and a prediction re-run under the same id (an
idempotent PUT after it finished) completes a second time; each prediction keeps one
`completed` event (the first) and each non-terminal event once per distinct body.

    saladcog receive --listen '[::]:8080' --db webhooks.sqlite   # WEBHOOK_AUTH_TOKEN from the env
    POST /webhook                  a Cog webhook (Authorization: Bearer <token> when a token is set)
    GET  /predictions/{id}         that prediction's stored events, in arrival order
    GET  /health                   {"status": "ok", "stored": n, "rejected": n}
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from pathlib import Path

import uvicorn

from saladcog.cogwire import TERMINAL_STATES
from saladcog.headlimit import UVICORN_HEAD_LIMIT

# Keep the answer fast: a store held by another writer for longer than this answers 503.
BUSY_TIMEOUT_SECONDS = 0.5
MAX_BODY_BYTES = 100 * 1024 * 1024  # coglet's own request limit; outputs may carry data URIs

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT,
    dedup_key TEXT NOT NULL,
    received_at REAL NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (prediction_id, dedup_key)
)
"""


def event_kind(payload: dict) -> str:
    """Which webhook this is. Cog's body is the prediction's state and does not name the event,
    so read it from the state: terminal status → completed; output so far → output; logs → logs."""
    if payload.get("status") in TERMINAL_STATES:
        return "completed"
    if payload.get("output") is not None:
        return "output"
    if payload.get("logs"):
        return "logs"
    return "start"


@dataclasses.dataclass(frozen=True)
class Event:
    seq: int
    prediction_id: str
    event: str
    status: str | None
    received_at: float
    body: dict


class EventStore:
    """The sqlite file the receiver writes and clients read (from any process)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is fsynced before it returns, so an acknowledged event survives a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)

    def add(self, payload: dict) -> bool:
        """Store one webhook body; False when it duplicates one already stored."""
        prediction_id = payload.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise ValueError("webhook body has no prediction id")
        status = payload.get("status")
        if status is not None and not isinstance(status, str):
            raise ValueError(f"webhook body's status is a JSON {type(status).__name__}, not a string")
        kind = event_kind(payload)
        try:
            body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        except RecursionError:
            raise ValueError("webhook body is nested too deeply to be a prediction") from None
        key = "completed" if kind == "completed" else hashlib.sha256(body.encode()).hexdigest()
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO events (prediction_id, event, status, dedup_key, received_at, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (prediction_id, kind, status, key, time.time(), body),
            )
        return cursor.rowcount == 1

    def events(self, prediction_id: str) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, prediction_id, event, status, received_at, body FROM events"
                " WHERE prediction_id = ? ORDER BY seq",
                (prediction_id,),
            ).fetchall()
        return [Event(*row[:5], body=json.loads(row[5])) for row in rows]

    def completed(self, prediction_id: str) -> dict | None:
        """The prediction's final state, once its completed webhook is stored."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM events WHERE prediction_id = ? AND event = 'completed'",
                (prediction_id,),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def wait_completed(self, prediction_id: str, timeout: float, poll: float = 0.1) -> dict:
        """Block until the completed webhook for `prediction_id` is stored (by any process)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.completed(prediction_id)
            if state is not None:
                return state
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no completed webhook for prediction {prediction_id} after {timeout:.0f} s")
            time.sleep(poll)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class WebhookApp:
    """The ASGI application: authenticate, store, answer."""

    def __init__(self, store: EventStore, token: str | None = None):
        self.store = store
        self.token = token or None
        self.rejected = 0  # requests answered 503 because the store refused them

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/health":
            stored = await asyncio.to_thread(self.store.count)
            return await _json(send, 200, {"status": "ok", "stored": stored, "rejected": self.rejected})
        if method == "GET" and path.startswith("/predictions/"):
            events = await asyncio.to_thread(self.store.events, path.removeprefix("/predictions/"))
            return await _json(send, 200, [dataclasses.asdict(e) for e in events])
        if method == "POST" and path == "/webhook":
            return await self._webhook(scope, receive, send)
        return await _json(send, 404, {"error": f"no route {method} {path}"})

    async def _webhook(self, scope, receive, send) -> None:
        if self.token is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
                return await _json(send, 401, {"error": "missing or wrong bearer token"})
        body = await _read_body(receive)
        if body is None:
            return await _json(send, 413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
        # A body Cog would never send is the sender's fault (400), never an outage of the store.
        try:
            payload = json.loads(body)
        except RecursionError:
            return await _json(send, 400, {"error": "webhook body is nested too deeply to be a prediction"})
        except ValueError as e:  # JSONDecodeError, bad UTF-8
            return await _json(send, 400, {"error": f"webhook body is not JSON: {e}"})
        try:
            if not isinstance(payload, dict):
                raise ValueError("webhook body is not a JSON object")
            stored = await asyncio.to_thread(self.store.add, payload)
        except ValueError as e:
            return await _json(send, 400, {"error": str(e)})
        except sqlite3.Error as e:
            # Not stored: 503 makes Cog retry the completed webhook instead of losing it.
            self.rejected += 1
            return await _json(send, 503, {"error": f"event store unavailable: {e}"})
        await _json(send, 200, {"stored": stored})


async def _read_body(receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send, status: int, content) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def split_listen(listen: str) -> tuple[str, int]:
    """`[::]:8080`, `[::1]:0`, `127.0.0.1:8080` → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen {listen!r} must look like [::]:8080 or 127.0.0.1:8080")
    return host.strip("[]"), int(port)


class Receiver:
    """Serve `WebhookApp` on a background thread: `with Receiver("db.sqlite") as rx: rx.url`."""

    def __init__(self, db: str | Path, host: str = "::1", port: int = 0, token: str | None = None):
        self.store = EventStore(db)
        self.app = WebhookApp(self.store, token)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="on", **UVICORN_HEAD_LIMIT)
        self.server = uvicorn.Server(config)
        self.host = host
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/webhook"

    def start(self, timeout: float = 10.0) -> Receiver:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"webhook receiver did not start on {self.host}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self.store.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(db: str | Path, listen: str, token: str | None) -> None:
    """Run the receiver in the foreground until SIGINT/SIGTERM (`saladcog receive`)."""
    host, port = split_listen(listen)
    app = WebhookApp(EventStore(db), token)
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="on", **UVICORN_HEAD_LIMIT)
