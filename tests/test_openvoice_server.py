"""The OpenVoice runner under the real Cog server (coglet), over [::1] and 127.0.0.1, with the
tiny official-format weights: text in, decodable audio out; cloning a real speech clip; bad
input fails with a clear message and the server stays READY for the next request."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from conftest import librivox, predict
from openvoice_fixtures import openvoice_weights, server_env  # noqa: F401  (fixture)
from saladcog import audio
from saladcog.client import data_uri
from saladcog.serve import CogServer

# The tiny test models have a hop of 16 samples: a few sentences make a clip long enough to probe.
TEXT = "Hello world, the cat sat on the mat. " * 5


@pytest.fixture(scope="module")
def server(openvoice_weights):  # noqa: F811
    env = server_env(openvoice_weights)
    with CogServer("openvoice", env=env) as server:
        server.wait_ready(timeout=180)
        yield server


def _audio_file(output, tmp_path, fmt):
    header, _, payload = output["audio"].partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header[:40]
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(base64.b64decode(payload))
    return path


@pytest.mark.parametrize("host, fmt", [("[::1]", "wav"), ("127.0.0.1", "mp3")])
def test_text_to_speech(server, tmp_path, host, fmt):
    body = predict(server.url(host), {"text": TEXT, "speaker": "EN-BR", "output_format": fmt, "seed": 7}).json()
    assert body["status"] == "succeeded", body.get("error")
    out = body["output"]
    info = audio.probe(_audio_file(out, tmp_path, fmt))
    assert info.sample_rate == 44100 and info.channels == 1
    m = out["metrics"]
    assert m["words"] == 40 and m["sample_rate"] == 44100 and m["cloned"] is False
    assert info.duration == pytest.approx(m["audio_seconds"], abs=0.06 if fmt == "mp3" else 0.001)
    assert m["words_per_second"] == pytest.approx(m["words"] / m["processing_seconds"], rel=0.02)


def test_same_seed_same_file(server, tmp_path):
    inputs = {"text": "The cat sat on the mat.", "seed": 11, "speed": 1.5}
    a = predict(server.url(), inputs).json()["output"]["audio"]
    b = predict(server.url(), inputs).json()["output"]["audio"]
    assert a == b


def test_clone_a_real_voice(server, tmp_path):
    clip = librivox()[0]
    body = predict(server.url("[::1]"), {"text": TEXT, "reference_audio": data_uri(clip.wav), "seed": 1}).json()
    assert body["status"] == "succeeded", body.get("error")
    out = body["output"]
    samples = audio.decode(_audio_file(out, tmp_path, "wav"), 22050)
    assert out["metrics"]["cloned"] is True and out["metrics"]["sample_rate"] == 22050
    assert samples.size == pytest.approx(out["metrics"]["audio_seconds"] * 22050, abs=12)  # seconds rounded to 1 ms
    assert np.abs(samples).max() > 0


def test_unreadable_characters_are_left_out_not_spoken(server):
    clean = predict(server.url(), {"text": "The cat sat on the mat.", "seed": 3}).json()
    mixed = predict(server.url(), {"text": "The cat \U0001F600 sat on\x07 the \u05e9\u05dc\u05d5\u05dd mat.", "seed": 3}).json()
    assert clean["status"] == mixed["status"] == "succeeded", mixed.get("error")
    assert mixed["output"]["audio"] == clean["output"]["audio"]


def _silent_wav(tmp_path):
    return audio.encode(np.zeros(22050 * 3, np.float32), 22050, tmp_path / "silence.wav")


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"text": ""}, "text is empty"),
        ({"text": "x" * 1_000_000}, "text too long: 1000000 characters"),
        ({"text": "Hello.", "language": "FR"}, "language 'FR' is not supported yet: only English"),
        ({"text": "Hello.", "reference_audio": "data:audio/wav;base64," + base64.b64encode(b"not audio at all" * 100).decode()},
         "is not an audio or video file that FFmpeg can read"),
        ({"text": "Hello.", "reference_audio": "silent"}, "reference audio is silent"),
        ({"text": "\U0001F600\U0001F389"}, "nothing this model can read (it reads English in Latin letters): '\U0001F600' (U+1F600)"),
        ({"text": "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd"}, "nothing this model can read"),
        ({"text": "\x01\x02\x03"}, "'\\x01' (U+0001)"),
    ],
)
def test_bad_input_fails_clearly_then_ready_then_success(server, tmp_path, inputs, message):
    if inputs.get("reference_audio") == "silent":
        inputs = {**inputs, "reference_audio": data_uri(_silent_wav(tmp_path))}
    body = predict(server.url("[::1]"), inputs).json()
    assert body["status"] == "failed"
    assert message in body["error"] and body["error"].strip()
    server.wait_ready(timeout=5)  # coglet frees the slot just after it answers
    ok = predict(server.url("[::1]"), {"text": "The cat sat."}).json()
    assert ok["status"] == "succeeded", ok.get("error")


def test_unknown_speaker_is_rejected_by_the_schema(server):
    response = predict(server.url("[::1]"), {"text": "Hello.", "speaker": "EN-XX"})
    assert response.status_code == 422 and "EN-XX" in response.text
    server.wait_ready(timeout=5)  # coglet frees the slot just after it answers
