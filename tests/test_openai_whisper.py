"""The OpenAI front door (COG_IPV6_MODE=openai, through ipv6_entrypoint.sh) in front of the Whisper
runner (tiny.en) under the real Cog server, called with the official `openai` SDK over [::1]:
transcripts as good as through Cog's API, every response format in OpenAI's shape, errors as the
SDK's classes, a busy instance retried by the SDK itself, and Cog's own API on the same port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import httpx
import jiwer
import openai
import pytest

from conftest import normalize
from saladcog import audio, probe
from saladcog.client import data_uri
from saladcog.serve import CogServer
from saladcog.webhooks import Receiver
from client_harness import long_recording
from test_openai_entrypoint import front_door_pid
from test_whisper_server import concatenated, parse_cues  # noqa: F401  (fixture, strict parser)

API_KEY = "sk-test-front-door"
KEY = {"Authorization": f"Bearer {API_KEY}"}
MAX_UPLOAD_MB = 5


@pytest.fixture(scope="module")
def spool(tmp_path_factory):
    """TMPDIR of the front door: where uploads are spooled, so tests can see them go."""
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(spool):
    env = {"SALADCOG_OPENAI_API_KEY": API_KEY, "SALADCOG_OPENAI_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
           "TMPDIR": str(spool)}
    with CogServer("whisper", front_door="openai", env=env) as server:
        server.wait_ready(timeout=180)
        yield server


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=f"{server.url('[::1]')}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def spooled_files(server, spool) -> list:
    """Uploads the front door still holds: its open files in its spool folder (Starlette's
    anonymous temporary files) and the upload links it issued (saladcog.handoff)."""
    held = []
    for fd in Path(f"/proc/{front_door_pid(server)}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(spool)):
            held.append(target)
    return held + list(spool.glob("saladcog-uploads-*/*"))


def wait_ready(server, timeout: float = 5.0) -> str:
    """The health once READY (coglet frees its slot just after it answers), or at the deadline."""
    deadline = time.monotonic() + timeout
    while server.health() != "READY" and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.health()


@pytest.fixture(autouse=True)
def left_ready(request):
    """After every test: the server is READY and no upload is left on disk."""
    yield
    if "server" in request.fixturenames:
        server, spool = request.getfixturevalue("server"), request.getfixturevalue("spool")
        assert wait_ready(server) == "READY"
        assert spooled_files(server, spool) == []


def test_librivox_word_error_rate_as_through_cog(server, client, clips, concatenated):  # noqa: F811
    path, _ = concatenated
    with path.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    reference = normalize(" ".join(clip.text for clip in clips))
    wer = jiwer.wer(reference, normalize(result.text))
    cog = httpx.post(f"{server.url('[::1]')}/predictions", json={"input": {"audio": data_uri(path)}},
                     headers=KEY, timeout=300).json()["output"]
    assert wer <= 0.03, (wer, result.text)
    assert result.text == cog["text"]  # the same runner, the same settings: the same words
    assert result.usage.type == "duration" and result.usage.seconds == pytest.approx(cog["duration"], abs=1e-3)


def test_every_response_format_async(server, clips):
    """json, text, srt, vtt and verbose_json (words and segments) through the async client."""
    clip = clips[0]

    async def all_formats():
        async with openai.AsyncOpenAI(base_url=f"{server.url('[::1]')}/v1", api_key=API_KEY) as client:
            results = {}
            for fmt in ("json", "text", "srt", "vtt"):
                results[fmt] = await client.audio.transcriptions.create(
                    model="whisper-1", file=clip.wav, response_format=fmt)
            results["verbose_json"] = await client.audio.transcriptions.create(
                model="whisper-1", file=clip.wav, response_format="verbose_json",
                timestamp_granularities=["word", "segment"], language="en")
            return results

    results = asyncio.run(all_formats())
    text = results["json"].text
    assert jiwer.wer(clip.text, normalize(text)) <= 0.3
    assert results["text"] == text + "\n"
    for fmt in ("srt", "vtt"):
        cues = parse_cues(results[fmt], fmt)
        assert normalize(" ".join(c[2] for c in cues)) == normalize(text)
    verbose = results["verbose_json"]
    assert verbose.language == "english" and verbose.text == text
    assert verbose.duration == pytest.approx(len(clip.samples) / 16000, abs=0.05)
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))
    assert " ".join(s.text.strip() for s in verbose.segments) == text
    words = verbose.words
    assert normalize(" ".join(w.word for w in words)) == normalize(text)
    assert all(w.word == w.word.strip() and 0 <= w.start <= w.end <= verbose.duration + 0.05 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_verbose_json_without_words_unless_asked(client, clips):
    result = client.audio.transcriptions.create(model="whisper-1", file=clips[1].wav, response_format="verbose_json")
    assert result.words is None and result.segments


def test_stream_events(client, clips):
    deltas, done = [], None
    stream = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=clips[2].wav, stream=True)
    for event in stream:
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
        else:
            assert event.type == "transcript.text.done"
            done = event.text
    assert deltas and done == "".join(deltas)
    assert jiwer.wer(clips[2].text, normalize(done)) <= 0.3


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations deprecated
def test_translate_on_english_only_model_is_refused(client, clips):
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.translations.create(model="whisper-1", file=clips[0].wav)
    assert error.value.status_code == 400
    assert "task 'translate' needs a multilingual model; tiny.en is English-only" == error.value.body["message"]


def test_models(client):
    names = [m.id for m in client.models.list().data]
    assert names == ["whisper", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("dall-e-3")


@pytest.mark.parametrize(
    "kwargs, error_class, message",
    [
        (dict(file=("notes.wav", b"these are my notes, not audio")), openai.BadRequestError,
         "the uploaded file notes.wav is not an audio or video file that FFmpeg can read"),
        (dict(file=("empty.mp3", b"")), openai.BadRequestError, "the uploaded file empty.mp3 is empty"),
        (dict(response_format="ogg"), openai.BadRequestError, "response_format 'ogg' is not supported"),
        (dict(model="gpt-5"), openai.BadRequestError, "model 'gpt-5' is not served here"),
        (dict(model=openai.omit), openai.BadRequestError, "model is required"),
        (dict(temperature=1.5), openai.BadRequestError, "temperature"),
        (dict(timestamp_granularities=["word"]), openai.BadRequestError, "needs response_format verbose_json"),
        (dict(language="xx"), openai.BadRequestError, "xx"),
    ],
    ids=["not-audio", "empty", "format", "model", "no-model", "temperature", "granularity", "language"],
)
def test_bad_input_names_the_problem(client, clips, kwargs, error_class, message):
    args = dict(model="whisper-1", file=clips[0].wav) | kwargs
    with pytest.raises(error_class) as error:
        client.audio.transcriptions.create(**args)
    assert message in error.value.body["message"], error.value.body
    assert "saladcog-upload" not in error.value.body["message"]  # never the door's own handle
    # and the next request succeeds
    assert client.audio.transcriptions.create(model="whisper-1", file=clips[3].wav).text


@pytest.mark.parametrize("temperature", ["nan", "inf", "-inf", "1e999"])
def test_temperature_not_a_finite_number_is_400(server, clips, temperature):
    with clips[0].wav.open("rb") as f:
        response = httpx.post(f"{server.url('[::1]')}/v1/audio/transcriptions", headers=KEY,
                              data={"model": "whisper-1", "temperature": temperature}, files={"file": f})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "temperature"
    assert temperature in response.json()["error"]["message"]


def test_missing_file_part(server):
    response = httpx.post(f"{server.url('[::1]')}/v1/audio/transcriptions", data={"model": "whisper-1"},
                          files={"other": ("a.txt", b"x")}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 400
    assert response.json()["error"] == {"message": "file is required: the audio to transcribe, as a multipart "
                                        "file part", "type": "invalid_request_error", "param": "file",
                                        "code": "invalid_value"}


def test_too_large_upload_is_413(client):
    big = b"\0" * (MAX_UPLOAD_MB * 1_000_000 + 1)
    with pytest.raises(openai.APIStatusError) as error:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big))
    assert error.value.status_code == 413 and "5 MB" in error.value.body["message"]


def test_too_large_chunked_upload_is_413_while_reading(server):
    """No Content-Length to refuse it by: the front door counts as it reads, stops at the limit,
    and deletes what it had spooled (checked after every test)."""
    def body():
        yield (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
               b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n")
        for _ in range(MAX_UPLOAD_MB + 2):
            yield b"\0" * 1_000_000
        yield b"\r\n--b--\r\n"

    response = httpx.post(f"{server.url('[::1]')}/v1/audio/transcriptions", content=body(), headers={
        "Content-Type": "multipart/form-data; boundary=b", "Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_upload_cut_off_midway_leaves_nothing(server, spool):
    """The caller hangs up halfway through a 2 MB upload: the partial file is deleted."""
    head = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.wav\"\r\n\r\n")
    with socket.create_connection(("::1", server.port)) as sock:
        # Past Starlette's 1 MiB in memory, so that the part is spooled to disk.
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 3000000\r\n\r\n" + head + b"\0" * 1_500_000)
        deadline = time.monotonic() + 10
        while not spooled_files(server, spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert spooled_files(server, spool), "the upload was not being spooled"
    deadline = time.monotonic() + 10
    while spooled_files(server, spool) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spooled_files(server, spool) == []


def test_api_key_protects_every_path_but_the_health_check(server, clips):
    url = server.url("[::1]")
    with openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            wrong.audio.transcriptions.create(model="whisper-1", file=clips[0].wav)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
    # Cog's own API on the same port: a transcription, a cancel, the schema, the stop switch
    job = {"input": {"audio": data_uri(clips[0].wav)}}
    assert httpx.post(f"{url}/predictions", json=job).status_code == 401
    assert httpx.put(f"{url}/predictions/x", json=job, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{url}/predictions/x/cancel").status_code == 401
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    assert httpx.post(f"{url}/shutdown").status_code == 401
    assert httpx.get(f"{url}/health-check").status_code == 200  # the platform's probes call it
    # the scheme is case-insensitive (RFC 9110); /shutdown is never passed through, key or not
    assert httpx.get(f"{url}/openapi.json", headers={"Authorization": f"bearer {API_KEY}"}).status_code == 200
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"BEARER {API_KEY}"}).status_code == 200
    assert httpx.post(f"{url}/shutdown", headers=KEY).status_code == 403
    assert wait_ready(server) == "READY"


def test_header_flood_is_refused_before_it_is_held(server):
    """20,000 headers (~600 KB) in one request: refused (400) while reading the head, not held."""
    flood = b"".join(b"X-Flood-%05d: %s\r\n" % (i, b"x" * 16) for i in range(20_000))
    with socket.create_connection(("::1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
                     + b"\r\n" + flood + b"\r\n")
        status = sock.makefile("rb").readline()
    assert status.split()[1] == b"400", status
    assert httpx.get(f"{server.url('[::1]')}/v1/models", headers=KEY).status_code == 200


def test_a_caller_who_hangs_up_frees_the_instance(server, clips, tmp_path):
    """The caller of a long transcription hangs up: the door cancels its prediction, the slot is
    free within seconds (not at the end of the transcription), and the caller's retry succeeds."""
    # ~3 min of speech (tens of seconds of work here) in MP3, under this server's 5 MB limit
    samples = audio.decode(long_recording(tmp_path / "long.wav", repeats=5), 16000)
    recording = audio.encode(samples, 16000, tmp_path / "long.mp3", "mp3")
    body = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.mp3\"\r\n\r\n"
            + recording.read_bytes() + b"\r\n--b--\r\n")
    with socket.create_connection(("::1", server.port)) as sock:
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + API_KEY.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + 30
        while server.health() != "BUSY" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.health() == "BUSY"
        time.sleep(0.5)  # well into the transcription
    hung_up = time.monotonic()
    assert wait_ready(server, timeout=20) == "READY"
    freed_after = time.monotonic() - hung_up
    assert freed_after < 5.0, freed_after  # the whole transcription takes far longer on 2 cores
    with openai.OpenAI(base_url=f"{server.url('[::1]')}/v1", api_key=API_KEY, max_retries=0) as client:
        assert client.audio.transcriptions.create(model="whisper-1", file=clips[0].wav).text


def test_busy_instance_is_retried_by_the_sdk(server, clips, concatenated):  # noqa: F811
    """Hold the one slot with a long prediction (Cog's async API, same port); the SDK gets 429 with
    Retry-After, waits, retries by itself, and gets its transcript once the slot is free."""
    path, _ = concatenated
    statuses = []
    http_client = openai.DefaultHttpxClient(event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
    with openai.OpenAI(base_url=f"{server.url('[::1]')}/v1", api_key=API_KEY, max_retries=8,
                       http_client=http_client) as client:
        held = httpx.post(f"{server.url('[::1]')}/predictions", headers={"Prefer": "respond-async", **KEY},
                          json={"input": {"audio": data_uri(path), "beam_size": 10}})
        assert held.status_code == 202
        deadline = time.monotonic() + 30
        while server.health() != "BUSY" and time.monotonic() < deadline:
            time.sleep(0.02)
        result = client.audio.transcriptions.create(model="whisper-1", file=clips[1].wav)
    assert statuses[0] == 429 and statuses[-1] == 200 and statuses.count(200) == 1, statuses
    assert jiwer.wer(clips[1].text, normalize(result.text)) <= 0.3


def test_cog_api_on_the_same_port(server, tmp_path, clips):
    url = server.url("[::1]")
    body = httpx.post(f"{url}/predictions", json={"input": {"audio": data_uri(clips[0].wav), "transcription": "srt"}},
                      headers=KEY, timeout=300).json()
    assert body["status"] == "succeeded" and body["output"]["transcription"].startswith("1\n00:00:00")
    assert probe.main(["--host", "::1", "--port", str(server.port)]) == 0
    assert httpx.get(f"{server.url('127.0.0.1')}/openapi.json", headers=KEY).json()["components"]["schemas"]["Input"]
    assert httpx.post(f"{url}/predictions", json={"input": {"beam_size": 99}}, headers=KEY).status_code == 422
    assert wait_ready(server) == "READY"  # Cog's 409 just after an answer is Cog's, not the door's
    with Receiver(tmp_path / "hooks.sqlite") as receiver:
        response = httpx.put(f"{url}/predictions/hooked-1", headers={"Prefer": "respond-async", **KEY}, json={
            "id": "hooked-1", "input": {"audio": data_uri(clips[4].wav)}, "webhook": receiver.url,
            "webhook_events_filter": ["completed"]})
        assert response.status_code == 202
        completed = receiver.store.wait_completed("hooked-1", timeout=60)
    assert completed["status"] == "succeeded"
    assert jiwer.wer(clips[4].text, normalize(completed["output"]["text"])) <= 0.3
    stream = httpx.get(f"{url}/health-check")  # the pass-through keeps Cog's own JSON as it is
    assert json.loads(stream.content)["status"] == "READY"
