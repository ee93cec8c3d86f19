"""The Cog server behind the front door, as the /v1 routes use it: its input schema, and one
prediction at a time that is cancelled when the caller hangs up.

Each prediction is a sync `PUT /predictions/{id}` with an id the door chose, so that the door can
`POST /predictions/{id}/cancel` it: checked against coglet 0.23.1, a cancel stops a running
Whisper prediction within ~1 s and the sync PUT then answers `"status": "canceled"` (coglet has
no GET /predictions/{id}: it answers 405, and forgets a prediction once it ends).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from starlette.requests import Request

from saladcog import cogwire
from saladcog.door.errors import ApiError, bad_request, busy, not_ready

# coglet frees its one slot just after it answers: a 409 within this window is not a busy server.
SLOT_RELEASE_S = 0.3
# A cancel sent before coglet has registered the prediction answers 404: try again this long.
CANCEL_RETRY_S = 2.0
# How long a cancelled prediction may take to end before the door stops waiting for its answer.
CANCEL_WAIT_S = 10.0
# coglet's words when its worker process died under a prediction: the instance, not the input.
WORKER_DIED = ("worker crashed", "worker fatal")


class CallerGone(Exception):
    """The caller hung up; its prediction was cancelled."""


def _resolve(prop: dict, components: dict) -> dict:
    """An input property with its choices inline: Cog puts them under `allOf: [{$ref}]`."""
    resolved = dict(prop)
    for part in prop.get("allOf", []):
        name = part.get("$ref", "").rpartition("/")[2]
        resolved.update(components.get(name, {}))
    return resolved


async def _hung_up(request: Request) -> None:
    """Returns when the caller's connection closes (the request body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Runner:
    """The runner behind `client` (an httpx.AsyncClient whose base_url is the Cog server)."""

    def __init__(self, client: httpx.AsyncClient):
        self.client = client
        self._schema: dict | None = None

    async def _get(self, path: str) -> httpx.Response:
        try:
            return await self.client.get(path)
        except httpx.TransportError as e:
            raise not_ready(f"the Cog server does not answer ({e})") from e

    async def input_schema(self) -> dict:
        """The runner's input properties, from Cog's /openapi.json (read once it answers)."""
        if self._schema is None:
            response = await self._get("/openapi.json")
            if response.status_code != 200:
                raise not_ready(f"the Cog server's /openapi.json answers HTTP {response.status_code}")
            components = response.json()["components"]["schemas"]
            self._schema = {name: _resolve(prop, components)
                            for name, prop in components["Input"]["properties"].items()}
        return self._schema

    async def kind(self) -> str:
        schema = await self.input_schema()
        return "transcription" if "audio" in schema else "speech" if "text" in schema else "other"

    async def predict(self, inputs: dict, request: Request | None = None) -> dict:
        """Run one prediction and return its output. With `request`, a caller who hangs up
        cancels it (CallerGone). Cog's answers become OpenAI's errors: busy (409) → 429, not
        ready (503) or a dead worker → 503, invalid input (422) or a failed run → 400."""
        prediction_id = uuid.uuid4().hex
        body = {"id": prediction_id, "input": inputs}
        deadline = time.monotonic() + SLOT_RELEASE_S
        while True:
            response = await self._put(prediction_id, body, request)
            if response.status_code != 409:
                break
            if time.monotonic() > deadline:
                raise busy()
            await asyncio.sleep(0.02)
        if response.status_code != 200:
            message = cogwire.error_text(response.content)
            if response.status_code == 503:
                raise not_ready(message)
            if response.status_code == 422:
                raise bad_request(message)
            raise ApiError(502, f"the Cog server answered HTTP {response.status_code}: {message}")
        state = response.json()
        status = state.get("status")
        if status == cogwire.FAILED:
            error = str(state.get("error") or "the prediction failed")
            if any(words in error.lower() for words in WORKER_DIED):
                raise not_ready(f"the model's worker stopped during this request ({error}); send it again")
            raise bad_request(cogwire.runner_message(error))
        if status != cogwire.SUCCEEDED:
            raise ApiError(500, f"the prediction ended {status}")
        return state["output"]

    async def _put(self, prediction_id: str, body: dict, request: Request | None) -> httpx.Response:
        put = asyncio.ensure_future(self.client.put(f"/predictions/{prediction_id}", json=body, timeout=None))
        gone = asyncio.ensure_future(_hung_up(request)) if request is not None else None
        try:
            await asyncio.wait({put, gone} - {None}, return_when=asyncio.FIRST_COMPLETED)
            if not put.done():  # the caller hung up first
                await self._cancel(prediction_id, put)
                raise CallerGone(prediction_id)
            return put.result()
        except httpx.TransportError as e:
            raise not_ready(f"the Cog server does not answer ({e})") from e
        finally:
            for task in (put, gone):
                if task is not None and not task.done():
                    task.cancel()

    async def _cancel(self, prediction_id: str, put: asyncio.Future) -> None:
        """Cancel the prediction and wait (bounded) until coglet has let go of it."""
        deadline = time.monotonic() + CANCEL_RETRY_S
        while not put.done():
            response = await self.client.post(f"/predictions/{prediction_id}/cancel")
            if response.status_code != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.wait({put}, timeout=CANCEL_WAIT_S)
