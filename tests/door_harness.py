"""The front door in front of a real Cog server, for tests: its Starlette app in the test process
with the official `openai` SDK over httpx's ASGI transport (`with_door`; Starlette's TestClient
serves the sync SDK), or `python -m saladcog.door` as a process of its own (`DoorProcess`) where
a test needs real sockets or signals."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from saladcog import probe
from saladcog.door.app import create_app
from saladcog.serve import free_port

SRC = Path(__file__).resolve().parents[1] / "src"

API_KEY = "sk-in-process"
KEY = {"Authorization": f"Bearer {API_KEY}"}


def with_door(cog_url: str, scenario, *, model: str = "whisper", api_key: str = API_KEY, **settings):
    """`await scenario(sdk, http)` against a fresh app, its httpx client to Cog in this loop;
    `http` carries the key, `sdk` is an AsyncOpenAI without retries."""

    async def main():
        app = create_app(cog_url, model=model, api_key=api_key, **settings)
        async with app.state.cog, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://door",
                                                    headers={"Authorization": f"Bearer {api_key}"},
                                                    timeout=300) as http:
            async with openai.AsyncOpenAI(base_url="http://door/v1", api_key=api_key, http_client=http,
                                          max_retries=0) as sdk:
                return await scenario(sdk, http)

    return asyncio.run(main())


class DoorProcess:
    """`python -m saladcog.door --port P --upstream URL` on [::], started and READY."""

    def __init__(self, upstream: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://[::1]:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "saladcog.door", "--port", str(self.port), "--upstream", upstream],
            env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})})
        deadline = time.monotonic() + 30
        while self.health() != "READY":
            assert time.monotonic() < deadline and self.process.poll() is None, "the door did not start"
            time.sleep(0.05)

    def health(self) -> str:
        """The status the door reports ("" while nothing answers)."""
        try:
            return probe.health("::1", self.port, timeout=2.0)
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
