"""A receiver for SaladCloud's job webhooks, signed in the Standard Webhooks scheme
(`webhook-id`, `webhook-timestamp`, `webhook-signature`; the secret is the organization's
webhook secret key, `whsec_…`, from the SaladCloud API).

Verification is the `standardwebhooks` library's (HMAC-SHA256 over id.timestamp.body, a
timestamp within 5 minutes); on top of it, an id seen before is refused, so a captured event
cannot be played again within that window. An event only says "look at job X now": the job's
state and output are always read back through the API, never taken from the event.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_EVENT_BYTES = 1 << 20
# Ids remembered for replay refusal: more than any 5-minute window of one queue's events.
REMEMBERED_IDS = 100_000


class Refused(ValueError):
    """An event that is not Salad's, or not new."""


class Verifier:
    def __init__(self, secret: str):
        self._webhook = Webhook(secret)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def verify(self, body: bytes, headers) -> dict:
        """The event, once: unsigned, wrongly signed, stale (over 5 minutes) or replayed raises Refused."""
        try:
            event = self._webhook.verify(body, dict(headers))
        except WebhookVerificationError as e:
            raise Refused(f"webhook refused: {e}") from None
        except (ValueError, TypeError) as e:  # a malformed signature or a body that is not JSON
            raise Refused(f"webhook refused: malformed ({e})") from None
        event_id = headers.get("webhook-id")
        with self._lock:
            if event_id in self._seen:
                raise Refused(f"webhook refused: event {event_id} was already received")
            self._seen[event_id] = None
            while len(self._seen) > REMEMBERED_IDS:
                self._seen.popitem(last=False)
        return event


def job_id(event) -> str | None:
    """The job an event is about: Salad's events carry the job under `data`."""
    if not isinstance(event, dict):
        return None
    data = event.get("data") if isinstance(event.get("data"), dict) else event
    value = data.get("id") or data.get("job_id")
    return value if isinstance(value, str) else None


def receiver_app(verifier: Verifier, on_job: Callable[[str], None]) -> Starlette:
    """POST / with a signed event → 200 and `on_job(job id)`; anything refused → 401."""

    async def receive(request: Request) -> JSONResponse:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_EVENT_BYTES:
                return JSONResponse({"error": "event too large"}, 413)
        try:
            event = verifier.verify(bytes(body), request.headers)
        except Refused as e:
            return JSONResponse({"error": str(e)}, 401)
        found = job_id(event)
        if found:
            on_job(found)
        return JSONResponse({"received": found or json.dumps(event)[:80]})

    return Starlette(routes=[Route("/", receive, methods=["POST"])])
