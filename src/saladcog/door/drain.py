"""Drain on SIGTERM: stop taking work, finish what runs, tell async callers what could not finish.

From SIGTERM on: /health-check answers DRAINING (the readiness probe, saladcog.probe, passes only
on READY, so the gateway and the queue send nothing more), new predictions get 503 with
Retry-After, sync requests already in flight run to their end and are answered. An async
prediction that came through the door with a `webhook` is tracked; the door waits for it until
the grace deadline (COG_SHUTDOWN_TIMEOUT seconds after SIGTERM, less DEADLINE_MARGIN_S), and if
it still runs then, sends its webhook a terminal `failed` event in Cog's shape (honouring
`webhook_events_filter` and WEBHOOK_AUTH_TOKEN as Cog does). Then the door exits 0, and the
supervisor stops the Cog server.

Which prediction runs is read from Cog's /health-check: coglet runs one at a time (saladcog's
runners have concurrency 1), and an async prediction accepted (202) means the one before it has
ended, so the last async prediction accepted is the one running while Cog says BUSY and no sync
request is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import sys
import time
from collections.abc import Iterator

import httpx

from saladcog import cogwire
from saladcog.door.errors import draining

# Cog's own default for COG_SHUTDOWN_TIMEOUT is 30 s.
DEFAULT_GRACE_S = 30.0
# Time kept back from the grace period to send the terminal webhooks before the supervisor kills.
DEADLINE_MARGIN_S = 2.0
POLL_S = 0.1
WEBHOOK_TIMEOUT_S = 5.0
STOPPED_ERROR = ("the instance stopped (SIGTERM) before this prediction finished; nothing was "
                 "returned: send the prediction again")


def grace_seconds() -> float:
    return float(os.environ.get("COG_SHUTDOWN_TIMEOUT") or DEFAULT_GRACE_S)


class Drain:
    def __init__(self):
        self.draining = False
        self.in_flight_count = 0
        self.tracked: dict | None = None  # the last async prediction with a webhook: its request body

    def refuse_when_draining(self) -> None:
        if self.draining:
            raise draining()

    def begin_request(self) -> None:
        self.in_flight_count += 1

    def end_request(self) -> None:
        self.in_flight_count -= 1

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        self.begin_request()
        try:
            yield
        finally:
            self.end_request()

    def track(self, body: dict) -> None:
        """An async prediction Cog accepted (202), as the caller sent it."""
        self.tracked = body if body.get("webhook") else None

    async def run(self, cog: httpx.AsyncClient, grace_s: float) -> None:
        """Returns when nothing runs any more or the deadline has come, after sending the
        terminal webhook of a tracked prediction still running."""
        self.draining = True
        deadline = time.monotonic() + max(grace_s - DEADLINE_MARGIN_S, 0.0)
        while time.monotonic() < deadline:
            if self.in_flight_count == 0 and await _cog_status(cog) != "BUSY":
                return
            await asyncio.sleep(POLL_S)
        if self.tracked is not None and self.in_flight_count == 0 and await _cog_status(cog) == "BUSY":
            await send_stopped_webhook(self.tracked)


async def _cog_status(cog: httpx.AsyncClient) -> str:
    try:
        return (await cog.get("/health-check", timeout=2.0)).json().get("status", "")
    except (httpx.HTTPError, ValueError):
        return ""


async def send_stopped_webhook(request_body: dict) -> None:
    """Cog's `completed` webhook for a prediction the instance could not finish."""
    events = request_body.get("webhook_events_filter") or cogwire.WEBHOOK_EVENTS
    if "completed" not in events:
        return
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    payload = {"id": request_body.get("id"), "input": request_body.get("input"), "output": None,
               "status": cogwire.FAILED, "error": STOPPED_ERROR, "logs": "", "metrics": {},
               "completed_at": now}
    headers = {}
    if os.environ.get("WEBHOOK_AUTH_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['WEBHOOK_AUTH_TOKEN']}"
    try:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
            await client.post(request_body["webhook"], json=payload, headers=headers)
    except httpx.HTTPError as e:
        print(f"front door: the stopped-prediction webhook to {request_body['webhook']} failed: {e}", file=sys.stderr)
