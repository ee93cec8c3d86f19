"""The large-v3, large-v3-turbo and distil-large-v3 code paths, end to end through the real Cog
server, on tiny random models of their real shapes (tests/tiny_whisper.py): 128 mel bins, large-v3's
vocabulary, and each one's number of decoder layers relative to the others (turbo 4, distil 2)."""

from __future__ import annotations

import pytest

from conftest import SPEECH, predict
from saladcog.client import data_uri
from saladcog.serve import CogServer
from tiny_whisper import LANGUAGES, make_tiny_whisper

GO_FORWARD = SPEECH / "goforward.wav"


@pytest.fixture(
    scope="module",
    params=[("whisper", "large-v3", 2), ("whisper-turbo", "large-v3-turbo", 4), ("distil-whisper", "distil-large-v3", 2)],
    ids=lambda param: param[1],
)
def random_model_server(request, tmp_path_factory):
    runner, name, decoder_layers = request.param
    model_dir = make_tiny_whisper(tmp_path_factory.mktemp("models") / name, decoder_layers=decoder_layers)
    with CogServer(runner, env={"SALADCOG_MODEL_DIR": str(model_dir)}) as server:
        server.wait_ready(timeout=180)
        yield server, name


def test_multilingual_detection_and_translate(random_model_server):
    server, name = random_model_server
    body = predict(
        server.url("[::1]"),
        {"audio": data_uri(GO_FORWARD), "task": "translate", "word_timestamps": True, "transcription": "vtt"},
    ).json()
    assert body["status"] == "succeeded", body.get("error")
    output = body["output"]
    assert output["metrics"]["model"] == name
    # Random weights: any of large-v3's 100 languages, yue included, may come out.
    assert output["detected_language"] in LANGUAGES
    assert output["transcription"].startswith("WEBVTT")
    for segment in output["segments"]:
        assert 0 <= segment["start"] <= segment["end"] <= output["duration"] + 30
        assert "words" in segment


def test_forced_language_yue_and_batched_pipeline(random_model_server):
    server, _ = random_model_server
    body = predict(
        server.url("127.0.0.1"), {"audio": data_uri(GO_FORWARD), "language": "yue", "batch_size": 4}
    ).json()
    assert body["status"] == "succeeded", body.get("error")
    assert body["output"]["detected_language"] == "yue"
    assert body["output"]["language_probability"] == 1


def test_model_directory_override_must_hold_a_model(tmp_path):
    server = CogServer("whisper", env={"SALADCOG_MODEL_DIR": str(tmp_path)})
    with server, pytest.raises(Exception) as failure:
        server.wait_ready(timeout=120)
    assert "has no model.bin" in str(failure.value)
