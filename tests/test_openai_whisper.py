"""The OpenAI front door's app in process (Starlette's TestClient for the sync SDK, httpx's ASGI
transport for the async one) in front of the Whisper runner (tiny.en) under the real Cog server,
called with the official `openai` SDK: transcripts as good as through Cog's API, every response
format in OpenAI's shape, errors as the SDK's classes, a busy instance retried by the SDK itself,
the key on every path, and Cog's own API on the same app. End to end through ipv6_entrypoint.sh:
test_openai_whisper_e2e.py."""

from __future__ import annotations

import json
import time

import jiwer
import openai
import pytest
from starlette.testclient import TestClient

from conftest import normalize
from door_harness import API_KEY, KEY, with_door
from saladcog import handoff
from saladcog.client import data_uri
from saladcog.door.app import create_app
from saladcog.webhooks import Receiver
from test_openai_whisper_e2e import wait_ready
from test_whisper_server import concatenated, parse_cues  # noqa: F401  (fixture, strict parser)

MAX_UPLOAD_MB = 5


@pytest.fixture(scope="module")
def door(whisper_server):
    """The app before the session's Whisper server, and an httpx.Client that calls it in process."""
    app = create_app(whisper_server.url("127.0.0.1"), model="whisper", api_key=API_KEY,
                     max_upload_bytes=MAX_UPLOAD_MB * 1_000_000)
    with TestClient(app, base_url="http://door") as http:
        yield http


@pytest.fixture
def client(door):
    # Not closed here: closing the SDK would close the module's TestClient.
    return openai.OpenAI(base_url="http://door/v1", api_key=API_KEY, max_retries=0, http_client=door)


@pytest.fixture(autouse=True)
def left_ready(whisper_server):
    """After every test: the Cog server is READY and no upload link is left."""
    yield
    assert wait_ready(whisper_server) == "READY"
    assert list(handoff.private_dir().iterdir()) == []


def test_librivox_word_error_rate_as_through_cog(door, whisper_server, client, clips, concatenated):  # noqa: F811
    path, _ = concatenated
    with path.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    reference = normalize(" ".join(clip.text for clip in clips))
    wer = jiwer.wer(reference, normalize(result.text))
    assert wait_ready(whisper_server) == "READY"  # coglet frees its slot just after it answers
    cog = door.post("/predictions", json={"input": {"audio": data_uri(path)}}, headers=KEY).json()["output"]
    assert wer <= 0.03, (wer, result.text)
    assert result.text == cog["text"]  # the same runner, the same settings: the same words
    assert result.usage.type == "duration" and result.usage.seconds == pytest.approx(cog["duration"], abs=1e-3)


def test_every_response_format_async(whisper_server, clips):
    """json, text, srt, vtt and verbose_json (words and segments) through the async client."""
    clip = clips[0]

    async def all_formats(client, http):
        results = {}
        for fmt in ("json", "text", "srt", "vtt"):
            results[fmt] = await client.audio.transcriptions.create(
                model="whisper-1", file=clip.wav, response_format=fmt)
        results["verbose_json"] = await client.audio.transcriptions.create(
            model="whisper-1", file=clip.wav, response_format="verbose_json",
            timestamp_granularities=["word", "segment"], language="en")
        return results

    results = with_door(whisper_server.url("127.0.0.1"), all_formats)
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
def test_temperature_not_a_finite_number_is_400(door, clips, temperature):
    with clips[0].wav.open("rb") as f:
        response = door.post("/v1/audio/transcriptions", headers=KEY,
                              data={"model": "whisper-1", "temperature": temperature}, files={"file": f})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "temperature"
    assert temperature in response.json()["error"]["message"]


def test_missing_file_part(door):
    response = door.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
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


def test_too_large_chunked_upload_is_413_while_reading(door):
    """No Content-Length to refuse it by: the front door counts as it reads, stops at the limit,
    and deletes what it had spooled (checked after every test)."""
    def body():
        yield (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
               b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n")
        for _ in range(MAX_UPLOAD_MB + 2):
            yield b"\0" * 1_000_000
        yield b"\r\n--b--\r\n"

    response = door.post("/v1/audio/transcriptions", content=body(), headers={
        "Content-Type": "multipart/form-data; boundary=b", "Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_api_key_protects_every_path_but_the_health_check(door, clips):
    wrong = openai.OpenAI(base_url="http://door/v1", api_key="wrong", max_retries=0, http_client=door)
    with pytest.raises(openai.AuthenticationError):
        wrong.audio.transcriptions.create(model="whisper-1", file=clips[0].wav)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    # Cog's own API on the same port: a transcription, a cancel, the schema, the stop switch
    job = {"input": {"audio": data_uri(clips[0].wav)}}
    assert door.post("/predictions", json=job).status_code == 401
    assert door.put("/predictions/x", json=job, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert door.post("/predictions/x/cancel").status_code == 401
    assert door.get("/openapi.json").status_code == 401
    assert door.post("/shutdown").status_code == 401
    assert door.get("/health-check").status_code == 200  # the platform's probes call it
    # the scheme is case-insensitive (RFC 9110); /shutdown is never passed through, key or not
    assert door.get("/openapi.json", headers={"Authorization": f"bearer {API_KEY}"}).status_code == 200
    assert door.get("/v1/models", headers={"Authorization": f"BEARER {API_KEY}"}).status_code == 200
    assert door.post("/shutdown", headers=KEY).status_code == 403


def test_busy_instance_is_retried_by_the_sdk(door, whisper_server, clips, concatenated):  # noqa: F811
    """Hold the one slot with a long prediction (Cog's async API, same app); the SDK gets 429 with
    Retry-After, waits, retries by itself, and gets its transcript once the slot is free."""
    path, _ = concatenated
    statuses = []
    held = door.post("/predictions", headers={"Prefer": "respond-async", **KEY},
                     json={"input": {"audio": data_uri(path), "beam_size": 10}})
    assert held.status_code == 202
    deadline = time.monotonic() + 30
    while whisper_server.health() != "BUSY" and time.monotonic() < deadline:
        time.sleep(0.02)
    door.event_hooks = {"response": [lambda r: statuses.append(r.status_code)]}
    try:
        client = openai.OpenAI(base_url="http://door/v1", api_key=API_KEY, max_retries=8, http_client=door)
        result = client.audio.transcriptions.create(model="whisper-1", file=clips[1].wav)
    finally:
        door.event_hooks = {"response": []}
    assert statuses[0] == 429 and statuses[-1] == 200 and statuses.count(200) == 1, statuses
    assert jiwer.wer(clips[1].text, normalize(result.text)) <= 0.3


def test_cog_api_on_the_same_app(door, whisper_server, tmp_path, clips):
    body = door.post("/predictions", json={"input": {"audio": data_uri(clips[0].wav), "transcription": "srt"}},
                     headers=KEY).json()
    assert body["status"] == "succeeded" and body["output"]["transcription"].startswith("1\n00:00:00")
    assert door.get("/openapi.json", headers=KEY).json()["components"]["schemas"]["Input"]
    assert door.post("/predictions", json={"input": {"beam_size": 99}}, headers=KEY).status_code == 422
    assert wait_ready(whisper_server) == "READY"  # Cog's 409 just after an answer is Cog's, not the door's
    with Receiver(tmp_path / "hooks.sqlite") as receiver:
        response = door.put("/predictions/hooked-1", headers={"Prefer": "respond-async", **KEY}, json={
            "id": "hooked-1", "input": {"audio": data_uri(clips[4].wav)}, "webhook": receiver.url,
            "webhook_events_filter": ["completed"]})
        assert response.status_code == 202
        completed = receiver.store.wait_completed("hooked-1", timeout=60)
    assert completed["status"] == "succeeded"
    assert jiwer.wer(clips[4].text, normalize(completed["output"]["text"])) <= 0.3
    health = door.get("/health-check")  # the pass-through keeps Cog's own JSON as it is
    assert json.loads(health.content)["status"] == "READY" and "setup" in health.json()
