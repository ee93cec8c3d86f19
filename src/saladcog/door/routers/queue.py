"""`POST /queue`: the local route SaladCloud's job-queue worker delivers jobs to (its container
group's `queue_connection` names this path and the door's port). See saladcog.queue.job for how
Cog's answers map onto the worker's contract.

Only callers on loopback may use it: the worker runs in the same container, and the public port
(behind Salad's gateway, maybe with an API key) must not run jobs around the queue.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from saladcog.door.errors import ApiError
from saladcog.queue.job import (MAX_INPUT_BYTES, Answer, Outputs, Runs, check_input_names, failed, parse_job,
                                predict, retry)

PATH = "/queue"


def from_loopback(client: tuple[str, int] | None) -> bool:
    """Whether an ASGI client address (host, port) is on loopback (IPv4-mapped included)."""
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (the rest is not read)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _state(request: Request) -> tuple[Runs, Outputs]:
    state = request.app.state
    if not hasattr(state, "queue_runs"):
        state.queue_runs = Runs()
        state.queue_outputs = Outputs.from_env()
    return state.queue_runs, state.queue_outputs


def _respond(answer: Answer) -> Response:
    return Response(answer.content(), answer.status, media_type="application/json")


async def queue_job(request: Request) -> Response:
    if not from_loopback(request.scope.get("client")):
        return _respond(failed("the queue route answers only callers inside the container (loopback)", 403))
    drain = request.app.state.door.drain
    if drain.draining:  # a 5xx: the queue gives the job to another instance
        return _respond(failed("this instance is stopping (SIGTERM); the queue sends the job elsewhere", 503))
    body = await _read_body(request, MAX_INPUT_BYTES)
    if body is None:
        return _respond(failed(f"the job's input is over {MAX_INPUT_BYTES:,} bytes: pass files as URLs", 413))
    job = parse_job(request.headers.get("salad-job-id"), body)
    if isinstance(job, Answer):
        return _respond(job)
    cog = request.app.state.cog
    try:
        schema = await request.app.state.door.runner.input_schema()  # read once, shared with /v1
    except ApiError as e:  # not ready yet: the queue retries
        return _respond(retry(e.message))
    refused = check_input_names(job, schema)
    if refused:
        return _respond(refused)
    runs, outputs = _state(request)
    with drain.in_flight():  # a drain lets it finish
        return _respond(await runs.answer(job.id, lambda: predict(cog, job, outputs)))


routes = [Route(PATH, queue_job, methods=["POST"])]
