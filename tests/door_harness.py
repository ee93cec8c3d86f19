"""The front door's Starlette app in the test process, in front of a real Cog server: with the
official `openai` SDK over httpx's ASGI transport (async), or over Starlette's TestClient (an
httpx.Client that runs the app in a thread of its own: the sync SDK)."""

from __future__ import annotations

import asyncio

import httpx
import openai

from saladcog.door.app import create_app

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
