"""The MetaVoice runner under the real Cog server (coglet) on [::], called over [::1]."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest

from saladcog import audio
from saladcog.client import data_uri
from saladcog.serve import CogServer
from tests import metavoice_tiny as tiny

REFERENCE = Path(__file__).parent / "data" / "speech" / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    weights = tiny.write_all(tmp_path_factory.mktemp("metavoice-weights"))
    env = weights.server_env()
    with CogServer("metavoice", env=env) as srv:
        srv.wait_ready(timeout=180)
        yield srv


def predict(srv, inputs: dict) -> dict:
    response = httpx.post(f"{srv.url('[::1]')}/predictions", json={"input": inputs}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def save_output(body: dict, path: Path) -> Path:
    header, _, payload = body["output"]["audio"].partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header
    path.write_bytes(base64.b64decode(payload))
    return path


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_text_and_real_reference_give_decodable_audio(server, tmp_path, fmt):
    text = "The family of Dashwood had long been settled in Sussex."
    body = predict(server, {"text": text, "reference_audio": data_uri(REFERENCE), "seed": 5, "output_format": fmt})
    assert body["status"] == "succeeded", body.get("error")
    out = save_output(body, tmp_path / f"speech.{fmt}")
    info = audio.probe(out)
    assert info.sample_rate == 24000 and info.channels == 1 and info.codec.startswith("pcm_s16le" if fmt == "wav" else "mp3")
    metrics = body["output"]["metrics"]
    assert metrics["words"] == 10 and metrics["seed"] == 5 and metrics["pieces"] == 1
    assert metrics["audio_seconds"] == pytest.approx(info.duration, abs=0.06)
    assert metrics["words_per_second"] == pytest.approx(10 / metrics["processing_seconds"], rel=0.02)


def test_default_voice_and_same_seed_twice(server, tmp_path):
    inputs = {"text": "Sussex.", "seed": 9}
    a = save_output(predict(server, inputs), tmp_path / "a.wav")
    b = save_output(predict(server, inputs), tmp_path / "b.wav")
    samples = audio.decode(a, 24000)
    assert samples.size > 0 and np.array_equal(samples, audio.decode(b, 24000))


def test_unreadable_characters_are_left_out_not_spoken(server):
    clean = predict(server, {"text": "The cat sat.", "seed": 3})
    mixed = predict(server, {"text": "The cat \U0001F600 sat\x07.", "seed": 3})
    assert clean["status"] == mixed["status"] == "succeeded", mixed.get("error")
    assert mixed["output"]["audio"] == clean["output"]["audio"]


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"text": "   "}, "the text is empty"),
        ({"text": "a" * (1024 * 1024)}, "1048576 characters long"),
        ({"text": "Hi.", "reference_audio": "data:audio/wav;base64," + base64.b64encode(b"not audio" * 50).decode()},
         "not an audio or video file"),
        ({"text": "Hi.", "reference_audio": "short"}, "too short"),
        ({"text": "\U0001F600\U0001F389"}, "nothing this model can read (it reads English in Latin-1 characters): '\U0001F600' (U+1F600)"),
        ({"text": "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd"}, "nothing this model can read"),
        ({"text": "\x01\x02\x03"}, "'\\x01' (U+0001)"),
    ],
    ids=["empty", "megabyte", "not-audio", "short-reference", "emoji", "arabic-hebrew", "control"],
)
def test_bad_input_fails_then_server_is_ready_and_succeeds(server, tmp_path, inputs, message):
    if inputs.get("reference_audio") == "short":
        clip = audio.encode(audio.decode(REFERENCE, 16000)[:8000], 16000, tmp_path / "short.wav")
        inputs = {**inputs, "reference_audio": data_uri(clip)}
    body = predict(server, inputs)
    assert body["status"] == "failed" and message in body["error"], body.get("error")
    server.wait_ready(timeout=5)  # coglet frees the slot just after it answers
    assert predict(server, {"text": "Again.", "seed": 1})["status"] == "succeeded"
