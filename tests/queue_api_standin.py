"""A loopback stand-in for SaladCloud's public queue API (the calls salad-cloud-sdk's
services/queues.py makes), backed by the stand-in queue service, so that the real SDK and
`saladcog queue` talk to it through `SALAD_API_URL`. Jobs with a `webhook` get a Standard
Webhooks-signed event when they end, as Salad sends them."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import httpx
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.queue_standin import QueuedJob, QueueService

API_KEY = "test-api-key"
WEBHOOK_SECRET = "whsec_" + "c2FsYWRjb2ctcXVldWUtdGVzdC1zZWNyZXQ="
BASE = "/organizations/{org}/projects/{project}/queues"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def signed_event(job_id: str, status: str, secret: str = WEBHOOK_SECRET,
                 at: float | None = None) -> tuple[bytes, dict[str, str]]:
    """A job event as Salad sends it: JSON body, webhook-id/-timestamp/-signature headers."""
    body = json.dumps({"action": f"job.{status}", "data": {"id": job_id, "status": status}})
    event_id, when = f"msg_{uuid.uuid4().hex}", time.time() if at is None else at
    signature = Webhook(secret).sign(event_id, datetime.fromtimestamp(when, timezone.utc), body)
    return body.encode(), {"webhook-id": event_id, "webhook-timestamp": str(int(when)),
                           "webhook-signature": signature, "content-type": "application/json"}


class QueueApiStandIn:
    def __init__(self):
        self.queues: dict[str, tuple[dict, QueueService]] = {}
        self.job_creations = 0
        self.webhooks_sent: list[tuple[str, int]] = []
        routes = [
            Route(BASE, self.create_queue, methods=["POST"]),
            Route(BASE + "/{queue}", self.get_queue, methods=["GET"]),
            Route(BASE + "/{queue}/jobs", self.create_job, methods=["POST"]),
            Route(BASE + "/{queue}/jobs", self.list_jobs, methods=["GET"]),
            Route(BASE + "/{queue}/jobs/{job}", self.get_job, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes)
        self.app.add_middleware(_ApiKey)

    def service(self, name: str) -> QueueService:
        return self.queues[name][1]

    async def create_queue(self, request: Request) -> JSONResponse:
        body = await request.json()
        name = body["name"]
        if name in self.queues:
            return JSONResponse({"title": "queue exists"}, 409)
        queue = {"id": str(uuid.uuid4()), "name": name, "display_name": body.get("display_name", name),
                 "description": body.get("description"), "container_groups": [], "create_time": _now(),
                 "update_time": _now()}
        service = QueueService()
        service.on_end = self._send_webhook
        self.queues[name] = (queue, service)
        return JSONResponse(queue, 201)

    def _queue(self, request: Request) -> tuple[dict, QueueService] | None:
        return self.queues.get(request.path_params["queue"])

    async def get_queue(self, request: Request) -> JSONResponse:
        found = self._queue(request)
        if not found:
            return JSONResponse({"title": "not found"}, 404)
        queue, service = found
        length = sum(j.status in ("pending", "running") for j in service.jobs.values())
        return JSONResponse({**queue, "current_queue_length": length})

    async def create_job(self, request: Request) -> JSONResponse:
        found = self._queue(request)
        if not found:
            return JSONResponse({"title": "not found"}, 404)
        body = await request.json()
        service = found[1]
        job_id = service.submit(body["input"], metadata=body.get("metadata"), webhook=body.get("webhook"))
        self.job_creations += 1
        return JSONResponse(self._job(service.jobs[job_id]), 201)

    async def get_job(self, request: Request) -> JSONResponse:
        found = self._queue(request)
        job = found and found[1].jobs.get(request.path_params["job"])
        if not job:
            return JSONResponse({"title": "not found"}, 404)
        return JSONResponse(self._job(job))

    async def list_jobs(self, request: Request) -> JSONResponse:
        found = self._queue(request)
        if not found:
            return JSONResponse({"title": "not found"}, 404)
        return JSONResponse({"items": [self._job(j) for j in found[1].jobs.values()]})

    @staticmethod
    def _job(job: QueuedJob) -> dict:
        events = [{"action": "created", "time": job.create_time}]
        if job.deliveries:
            events.append({"action": "started", "time": job.create_time})
        if job.status in ("succeeded", "failed"):
            events.append({"action": job.status, "time": _now()})
        body = {"id": job.id, "input": job.input, "status": job.status, "events": events,
                "create_time": job.create_time, "update_time": _now(), "metadata": job.metadata or {}}
        if job.status == "succeeded":
            body["output"] = job.output
        if job.webhook:
            body["webhook"] = job.webhook
        return body

    def _send_webhook(self, job: QueuedJob) -> None:
        if not job.webhook:
            return
        body, headers = signed_event(job.id, job.status)
        try:
            status = httpx.post(job.webhook, content=body, headers=headers, timeout=10).status_code
        except httpx.TransportError:
            status = 0
        self.webhooks_sent.append((job.id, status))


class _ApiKey:
    """Salad's API refuses a request without the account's key in `Salad-Api-Key`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        if scope["type"] == "http" and headers.get(b"salad-api-key") != API_KEY.encode():
            await JSONResponse({"title": "unauthorized"}, 401)(scope, receive, send)
            return
        await self.app(scope, receive, send)
