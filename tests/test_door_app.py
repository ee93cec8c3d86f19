"""The front door's Starlette app in process (httpx's ASGI transport), called with the official
`openai` SDK, in front of a real Cog server (the Whisper runner, tiny.en): the same transcript as
Cog's own API on the same app, the uploaded file named in the caller's terms, and a worker that
dies mid-transcription answered as 503 with Retry-After (the SDKs retry it), not as a 400; and
the one-time upload handle (saladcog.handoff) refused when reused or forged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest

from client_harness import long_recording
from conftest import predict
from door_harness import SRC, with_door
from entrypoint_harness import children, cmdline
from saladcog import audio, handoff
from saladcog.cogwire import data_uri
from saladcog.door.app import create_app
from saladcog.serve import CogServer
from test_openai_whisper_e2e import wait_ready


def test_transcript_equals_cogs_own_through_the_same_app(whisper_server, clips):
    clip = clips[1]

    async def scenario(sdk, http):
        verbose = await sdk.audio.transcriptions.create(model="whisper-1", file=clip.wav,
                                                        response_format="verbose_json",
                                                        timestamp_granularities=["word"])
        await asyncio.to_thread(wait_ready, whisper_server)  # coglet frees its slot just after it answers
        cog = (await http.post("/predictions", json={"input": {"audio": data_uri(clip.wav),
                                                                "word_timestamps": True}})).json()
        return verbose, cog

    verbose, cog = with_door(whisper_server.url("127.0.0.1"), scenario)
    assert cog["status"] == "succeeded"
    assert verbose.text == cog["output"]["text"]
    words = [w["word"].strip() for s in cog["output"]["segments"] for w in s["words"]]
    assert [w.word for w in verbose.words] == words


def test_uploaded_file_is_named_as_the_caller_sent_it(whisper_server):
    async def scenario(sdk, http):
        with pytest.raises(openai.BadRequestError) as error:
            await sdk.audio.transcriptions.create(model="whisper-1", file=("../../etc/notes.wav", b"not audio"))
        return error.value.body["message"]

    message = with_door(whisper_server.url("127.0.0.1"), scenario)
    assert message.startswith("the uploaded file notes.wav is not an audio or video file"), message


def test_diarized_json_needs_a_diarizing_model(whisper_server, clips):
    async def scenario(sdk, http):
        with pytest.raises(openai.BadRequestError) as error, clips[0].wav.open("rb") as f:
            await sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="diarized_json")
        return error.value.body

    body = with_door(whisper_server.url("127.0.0.1"), scenario)
    assert body["param"] == "response_format" and "tells speakers apart" in body["message"], body


def test_upload_over_the_limit_is_413(whisper_server):
    async def scenario(sdk, http):
        with pytest.raises(openai.APIStatusError) as error:
            await sdk.audio.transcriptions.create(model="whisper-1", file=("big.wav", b"\0" * 2_000_001))
        return error.value

    error = with_door(whisper_server.url("127.0.0.1"), scenario, max_upload_bytes=2_000_000)
    assert error.status_code == 413 and error.body["code"] == "request_too_large"


def _worker_pid(server: CogServer) -> int:
    for pid in children(server.process.pid):
        if any("_run_worker" in part for part in cmdline(pid)):
            return pid
    raise AssertionError(f"no coglet worker under {server.process.pid}")


def test_worker_killed_mid_transcription_is_503_with_retry_after(tmp_path):
    recording = audio.encode(audio.decode(long_recording(tmp_path / "long.wav", repeats=3), 16000), 16000,
                             tmp_path / "long.mp3", "mp3")
    with CogServer("whisper") as server:
        server.wait_ready(timeout=180)

        async def scenario(sdk, http):
            transcription = asyncio.ensure_future(
                sdk.audio.transcriptions.with_raw_response.create(model="whisper-1", file=recording))
            deadline = time.monotonic() + 30
            while server.health() != "BUSY" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert server.health() == "BUSY"
            os.kill(_worker_pid(server), signal.SIGKILL)
            with pytest.raises(openai.APIStatusError) as error:
                await transcription
            return error.value

        error = with_door(server.url("127.0.0.1"), scenario)
    assert error.status_code == 503, error.body
    assert error.response.headers["retry-after"] == "1"
    assert error.body["type"] == "server_error" and "worker" in error.body["message"]


def test_an_upload_handle_works_once_and_only_as_issued(whisper_server, clips):
    """Cog's API straight to the runner: a handle the door issued reads the door's open file once;
    the same handle again, a token never issued, or a path dressed as a handle read nothing."""
    def run(audio: str) -> dict:
        assert wait_ready(whisper_server) == "READY"  # coglet frees its slot just after it answers
        return predict(whisper_server.url(), {"audio": audio}).json()

    with clips[0].wav.open("rb") as upload:
        handle, link = handoff.issue(upload.fileno(), "first.wav")
        try:
            first = run(handle)
            again = run(handle)
        finally:
            link.unlink(missing_ok=True)
    assert first["status"] == "succeeded" and first["output"]["text"]
    assert again["status"] == "failed" and "the upload is gone" in again["error"]
    for forged in ("saladcog-upload:" + "A" * 43 + "/notes.wav", "saladcog-upload:../../../etc/passwd",
                   f"saladcog-upload:{link.name}/../../etc/passwd"):
        body = run(forged)
        assert body["status"] == "failed" and "the uploaded audio: the upload" in body["error"], body


def test_the_door_does_not_import_the_callers_client():
    """Cog's wire format comes from saladcog.cogwire; the caller-side SDK is not the door's."""
    code = "import sys, saladcog.door.__main__; print(sorted(m for m in sys.modules if m.startswith('saladcog')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(SRC)}).stdout
    assert "saladcog.cogwire" in loaded and "saladcog.client" not in loaded, loaded


def test_the_queue_route_needs_no_key_from_loopback_and_answers_nobody_else():
    """SaladCloud's job-queue worker (in the container, on loopback) sends no API key; anyone else
    meets the key first, and the route itself with it."""

    async def post(client_address, headers):
        app = create_app("http://127.0.0.1:9", model="whisper", api_key="sk-key")
        transport = httpx.ASGITransport(app=app, client=client_address)
        async with app.state.cog, httpx.AsyncClient(transport=transport, base_url="http://door") as http:
            return await http.post("/queue", content=b"{}", headers=headers)

    no_job_id = asyncio.run(post(("127.0.0.1", 40000), {}))
    assert no_job_id.status_code == 400 and "Salad-Job-Id" in no_job_id.json()["error"], no_job_id.text
    assert asyncio.run(post(("::1", 40000), {})).status_code == 400
    assert asyncio.run(post(("203.0.113.7", 40000), {})).status_code == 401
    outsider = asyncio.run(post(("203.0.113.7", 40000), {"Authorization": "Bearer sk-key"}))
    assert outsider.status_code == 403 and "loopback" in outsider.json()["error"]
