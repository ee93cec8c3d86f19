"""The OpenAI front door in front of the OpenVoice runner (the tests' tiny official-format
checkpoints) under the real Cog server, called with the official `openai` SDK: the door's app in
process (Starlette's TestClient), and `python -m saladcog.door` on [::1] where the answer must
stream or the caller hangs up. Every response format decodes to the runner's audio, long text
streams piece by piece, bad input is the SDK's BadRequestError with a message naming the problem
before anything is synthesized."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import av
import numpy as np
import openai
import pytest
from starlette.testclient import TestClient

from conftest import predict
from door_harness import DoorProcess
from openvoice_fixtures import openvoice_weights, server_env  # noqa: F401  (fixture)
from saladcog.client import decode_data_uri
from saladcog.door.app import create_app
from saladcog.serve import CogServer
from saladcog.tts.textsplit import split_sentences

ONE_PIECE = "Hello world, the cat sat on the mat. " * 4  # under MeloTTS's 256 characters: one piece
# Six pieces as the engine splits them: the front door sends each as soon as it is synthesized.
LONG = "Hello world, the cat sat on the mat. It is a voice of five and twenty dollars. " * 18


@pytest.fixture(scope="module")
def server(openvoice_weights):  # noqa: F811
    env = server_env(openvoice_weights)
    with CogServer("openvoice", env=env) as server:
        server.wait_ready(timeout=180)
        yield server


@pytest.fixture(scope="module")
def door(server):
    """The door's app in process (Starlette's TestClient), before the OpenVoice server."""
    with TestClient(create_app(server.url("127.0.0.1"), model="openvoice"), base_url="http://door") as http:
        yield http


@pytest.fixture
def client(door):
    # Not closed here: closing the SDK would close the module's TestClient.
    return openai.OpenAI(base_url="http://door/v1", api_key="unused", http_client=door)


@pytest.fixture(scope="module")
def door_process(server):
    """`python -m saladcog.door` on a real socket, for what streams or hangs up."""
    door = DoorProcess(server.url("127.0.0.1"))
    yield door
    door.stop()


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """Mono float samples and rate, decoded by FFmpeg (PyAV) from the bytes as they came."""
    if fmt == "pcm":  # OpenAI's pcm: raw 16-bit little-endian mono at 24 kHz
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768, 24000
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        return np.concatenate(frames).astype(np.float32), stream.codec_context.sample_rate


@pytest.fixture(scope="module")
def reference(server):
    """The runner's own WAV for ONE_PIECE with seed 5, through Cog's API on the same port."""
    body = predict(server.url("[::1]"), {"text": ONE_PIECE, "speaker": "EN-BR", "seed": 5}).json()
    assert body["status"] == "succeeded", body.get("error")
    samples, rate = decode(decode_data_uri(body["output"]["audio"])[1], "wav")
    assert rate == 44100 and samples.size > 4410
    return samples


# (rate, samples the codec may add or drop at the ends)
FORMATS = {"wav": (44100, 0), "flac": (44100, 0), "pcm": (24000, 2), "mp3": (44100, 1152 * 2),
           "aac": (44100, 1024 * 2), "opus": (48000, 960 * 2)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_the_runners_audio(client, reference, fmt):
    response = client.audio.speech.create(model="tts-1", voice="EN-BR", input=ONE_PIECE, response_format=fmt,
                                          extra_body={"seed": 5})
    samples, rate = decode(response.content, fmt)
    expected_rate, slack = FORMATS[fmt]
    assert rate == expected_rate
    expected = reference.size * rate / 44100
    assert abs(samples.size - expected) <= slack + 1, (samples.size, expected)
    if fmt in ("wav", "flac"):  # lossless: the very samples the runner wrote
        np.testing.assert_array_equal(samples, reference)


def test_openai_voice_names_map_to_speakers(client):
    """alloy is the first speaker (EN-US), echo the fifth (EN-Default): different audio."""
    a = client.audio.speech.create(model="tts-1", voice="alloy", input="The cat sat.", response_format="wav",
                                   extra_body={"seed": 3}).content
    us = client.audio.speech.create(model="tts-1", voice="EN-US", input="The cat sat.", response_format="wav",
                                    extra_body={"seed": 3}).content
    e = client.audio.speech.create(model="tts-1", voice="echo", input="The cat sat.", response_format="wav",
                                   extra_body={"seed": 3}).content
    assert a == us and a != e


def test_long_text_streams_before_synthesis_ends(door_process):
    """First bytes arrive while later pieces are still to be synthesized (async client)."""
    assert len(list(split_sentences(LONG))) >= 5

    async def stream():
        async with openai.AsyncOpenAI(base_url=f"{door_process.url}/v1", api_key="unused") as client:
            started = time.perf_counter()
            arrivals, data = [], bytearray()
            async with client.audio.speech.with_streaming_response.create(
                model="gpt-4o-mini-tts", voice="nova", input=LONG, response_format="pcm",
            ) as response:
                async for chunk in response.iter_bytes():
                    arrivals.append(time.perf_counter() - started)
                    data += chunk
            return arrivals, bytes(data), time.perf_counter() - started

    arrivals, data, total = asyncio.run(stream())
    assert len(data) % 2 == 0 and len(data) > 24000  # over half a second of 16-bit audio
    assert len(arrivals) >= 5
    assert arrivals[0] < 0.5 * total, (arrivals, total)


def test_sse_stream_format(client):
    raw = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="EN-US", input=ONE_PIECE, response_format="pcm", stream_format="sse",
        extra_body={"seed": 5})
    events = [json.loads(line.removeprefix("data: ")) for line in raw.text.split("\n\n") if line]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    plain = client.audio.speech.create(model="tts-1", voice="EN-US", input=ONE_PIECE, response_format="pcm",
                                       extra_body={"seed": 5}).content
    assert pcm == plain


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input=""), "text is empty"),
        (dict(voice="darth"), "voice 'darth' is not available"),
        (dict(response_format="ogg"), "response_format 'ogg' is not supported"),
        (dict(voice=openai.omit), "voice is required"),
        (dict(model="dall-e-3"), "model 'dall-e-3' is not served here"),
        (dict(speed=3.0), "speed"),
    ],
    ids=["empty", "voice", "format", "no-voice", "model", "speed"],
)
def test_bad_input_names_the_problem(server, client, kwargs, message):
    args = dict(model="tts-1", voice="alloy", input="The cat sat on the mat.") | kwargs
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.speech.create(**args)
    assert message in error.value.body["message"], error.value.body
    deadline = time.monotonic() + 5  # coglet frees its slot just after it answers
    while server.health() != "READY" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.health() == "READY"
    assert client.audio.speech.create(model="tts-1", voice="alloy", input="The cat sat.").content


def test_transcription_route_on_a_speech_model(client, tmp_path):
    with pytest.raises(openai.NotFoundError) as error:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF"))
    assert "does not do transcription" in error.value.body["message"]


def test_a_caller_who_hangs_up_stops_the_synthesis(server, door_process):
    """After the first piece the caller closes the stream: the front door synthesizes at most
    the piece under way, not the rest of the text (counted in the Cog server's own log)."""
    pieces = len(list(split_sentences(LONG)))
    started_before = server.log_path.read_text().count("Starting prediction")
    with openai.OpenAI(base_url=f"{door_process.url}/v1", api_key="unused") as client:
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=LONG, response_format="pcm",
        ) as response:
            next(response.iter_bytes())
    deadline = time.monotonic() + 30
    while server.health() != "READY" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # time enough for a third piece to start, were it to
    assert server.health() == "READY"
    started = server.log_path.read_text().count("Starting prediction") - started_before
    assert started <= 2 < pieces, (started, pieces)


def _predictions_started(server) -> int:
    return server.log_path.read_text().count("Starting prediction")


@pytest.mark.parametrize(
    "text, message",
    [
        ("The cat sat on the mat. " * 171, "at most 4,096 are accepted"),  # 4,104 characters
        ("\x00\x01\x1b[31m\u202e", "'\\x1b' (U+001B)"),  # control characters and an escape sequence only
        ("The cat sat on the mat. " * 10 + "\U0001f389" * 300 + ". " + "The dog sat on the log. " * 3,
         "piece 2 of 3"),  # a piece with nothing to read in the middle
    ],
    ids=["over-openai-limit", "control-only", "unreadable-piece"],
)
def test_whole_text_is_checked_before_the_first_byte(server, client, text, message):
    """The whole input is checked once, and every piece, before anything is synthesized or sent:
    a 400 naming the problem, not a 200 whose stream stops halfway."""
    started = _predictions_started(server)
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="pcm")
    assert message in error.value.body["message"], error.value.body
    assert error.value.body["param"] == "input"
    assert _predictions_started(server) == started  # nothing ran


def test_control_characters_only_are_refused_by_the_runner_too(server):
    """Cog's own API: the runner refuses text of control characters as it refuses emoji."""
    body = predict(server.url("[::1]"), {"text": "\x00\x01\x1b[31m\u202e", "speaker": "EN-US"}).json()
    assert body["status"] == "failed"
    assert "nothing this model can read" in body["error"] and "U+001B" in body["error"]
