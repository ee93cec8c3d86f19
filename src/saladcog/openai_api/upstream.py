"""The Cog server behind the front door: predictions for the /v1 routes, and every other request
passed through byte for byte (Cog's own API: /predictions, /health-check, /openapi.json, …)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import uuid

import h11

from saladcog.client import error_text, runner_message
from saladcog.openai_api.errors import ApiError, bad_request, busy, not_ready
from saladcog.openai_api.http1 import Pool, UpstreamGone

# coglet frees its one slot just after it answers: a 409 within this window is not a busy server.
SLOT_RELEASE_S = 0.3
# Hop-by-hop headers (RFC 9110 §7.6.1) and Host belong to one connection, not to the request.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"expect",
              b"upgrade", b"host"}


def _resolve(prop: dict, components: dict) -> dict:
    """An input property with its choices inline: Cog puts them under `allOf: [{$ref}]`."""
    resolved = dict(prop)
    for part in prop.get("allOf", []):
        name = part.get("$ref", "").rpartition("/")[2]
        resolved.update(components.get(name, {}))
    return resolved


class Upstream:
    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the Cog server's URL must be http://HOST:PORT, got {url!r}")
        self.pool = Pool(parts.hostname, parts.port)
        self._schema: dict | None = None

    async def input_schema(self) -> dict:
        """The runner's input properties, from Cog's /openapi.json (read once it answers)."""
        if self._schema is None:
            status, body = await self._request("GET", "/openapi.json")
            if status != 200:
                raise not_ready(f"the Cog server's /openapi.json answers HTTP {status}")
            components = json.loads(body)["components"]["schemas"]
            self._schema = {name: _resolve(prop, components)
                            for name, prop in components["Input"]["properties"].items()}
        return self._schema

    async def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = [(b"content-type", b"application/json")] if body is not None else []
        try:
            response = await self.pool.request(method, path, headers, body)
            return response.status, await response.read()
        except (UpstreamGone, h11.ProtocolError) as e:
            raise not_ready(f"the Cog server does not answer ({e})") from e

    async def predict(self, inputs: dict) -> dict:
        """Run one prediction and return its output; Cog's answers become OpenAI's errors:
        busy (409) → 429, starting (503) → 503, invalid input (422) or a failed run → 400."""
        prediction_id = uuid.uuid4().hex
        request = json.dumps({"id": prediction_id, "input": inputs}).encode()
        deadline = time.monotonic() + SLOT_RELEASE_S
        while True:
            status, payload = await self._request("PUT", f"/predictions/{prediction_id}", request)
            if status != 409:
                break
            if time.monotonic() > deadline:
                raise busy()
            await asyncio.sleep(0.02)
        if status != 200:
            message = error_text(payload)
            if status == 503:
                raise not_ready(message)
            if status == 422:
                raise bad_request(message)
            raise ApiError(502, f"the Cog server answered HTTP {status}: {message}")
        body = json.loads(payload)
        if body.get("status") == "failed":
            raise bad_request(runner_message(str(body.get("error") or "the prediction failed")))
        if body.get("status") != "succeeded":
            raise ApiError(500, f"the prediction ended {body.get('status')}")
        return body["output"]

    async def proxy(self, scope, receive, send) -> None:
        """Pass one request through to the Cog server and stream its answer back."""
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])

        async def body():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        try:
            response = await self.pool.request(scope["method"], target, headers, body() if has_body else None)
        except (UpstreamGone, h11.ProtocolError) as e:
            message = f"the Cog server does not answer: {e}".encode()
            await send({"type": "http.response.start", "status": 502,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": message})
            return
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": [(k, v) for k, v in response.headers if k not in HOP_BY_HOP]})
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.close()
