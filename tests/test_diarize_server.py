"""The Whisper + diarization runner end to end: the real pyannote.audio 4.0.7 pipeline, loaded
offline with `Pipeline.from_pretrained` from a tiny random community-1 in the official layout
(tests/tiny_pyannote.py), and the embedded tiny.en, under the real Cog server over [::1] and
127.0.0.1. pyannote lives in .venvs/diarize (scripts/setup.sh), which the server runs with.

Random diarization weights cannot tell voices apart; these tests check what must hold whatever
the weights: counts asked for are honoured, every segment and word carries one of the speakers
found, the output shapes, and the failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from openai.types.audio import TranscriptionDiarized

import image_harness
from conftest import SPEECH, librivox, predict
from test_whisper_errors import CASES as BAD_INPUTS
from saladcog import audio, handoff
from saladcog.cogwire import data_uri, decode_data_uri
from saladcog.diarize.speakers import diarized_json
from saladcog.serve import CogServer
from door_harness import with_door

REPO = Path(__file__).resolve().parents[1]
DIARIZE_PYTHON = REPO / ".venvs" / "diarize" / "bin" / "python"
SR = 16000


@pytest.fixture(scope="module")
def community_1(tmp_path_factory) -> Path:
    if not DIARIZE_PYTHON.exists():
        image_harness.skip_or_fail(f"{DIARIZE_PYTHON} is missing: scripts/setup.sh makes it")
    target = tmp_path_factory.mktemp("community-1")
    subprocess.run(
        [str(DIARIZE_PYTHON), str(REPO / "tests" / "tiny_pyannote.py"), str(target)],
        check=True, capture_output=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYANNOTE_METRICS_ENABLED": "0"},
    )
    return target


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The server's TMPDIR: where the decoded waveforms go, and must not stay."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(community_1, scratch):
    # The door in this process hands uploads over through its own private directory.
    env = {"SALADCOG_DIARIZATION_DIR": str(community_1), "TMPDIR": str(scratch),
           "SALADCOG_UPLOAD_DIR": str(handoff.private_dir())}
    with CogServer("whisper-diarize", python=str(DIARIZE_PYTHON), env=env) as server:
        server.wait_ready(timeout=300)
        yield server


@pytest.fixture(scope="module")
def conversation(tmp_path_factory) -> str:
    """Two voices taking turns: a man (goforward.wav), a LibriVox narrator, the man again."""
    man = audio.decode(SPEECH / "goforward.wav", SR)
    narrator = librivox()[0].samples
    pause = np.zeros(SR // 2, dtype=np.float32)
    path = tmp_path_factory.mktemp("conversation") / "conversation.wav"
    return data_uri(audio.encode([man, pause, narrator, pause, man], SR, path))


def run(server, inputs: dict, host: str = "[::1]") -> dict:
    body = predict(server.url(host), inputs).json()
    assert body["status"] == "succeeded", body.get("error") or body.get("logs")
    return body["output"]


def check_labelled(output: dict) -> set[str]:
    """Every segment and word carries one of the speakers found; the turns lie in the audio."""
    labels = {turn["speaker"] for turn in output["speakers"]}
    assert len(labels) == output["num_speakers"]
    assert output["segments"], "tiny.en transcribes this speech"
    for segment in output["segments"]:
        assert segment["speaker"] in labels
        for word in segment.get("words", []):
            assert word["speaker"] in labels
    for turn in output["speakers"]:
        assert 0 <= turn["start"] < turn["end"] <= output["duration"] + 0.1
    return labels


@pytest.mark.parametrize(
    "counts, expected",
    [({"num_speakers": 2}, {2}), ({"min_speakers": 3}, {3, 4, 5}), ({"max_speakers": 1}, {1})],
    ids=["num_speakers=2", "min_speakers=3", "max_speakers=1"],
)
def test_speaker_counts_are_honoured(server, conversation, counts, expected):
    output = run(server, {"audio": conversation, "word_timestamps": True, **counts})
    labels = check_labelled(output)
    assert output["num_speakers"] in expected
    assert labels == {f"SPEAKER_{i:02d}" for i in range(output["num_speakers"])}
    assert all("words" in segment for segment in output["segments"])
    assert output["metrics"]["diarization_seconds"] > 0


def test_subtitles_and_openai_shape_carry_the_speakers(server, conversation):
    output = run(server, {"audio": conversation, "num_speakers": 2, "transcription": "srt",
                          "speaker_embeddings": True}, host="127.0.0.1")
    labels = check_labelled(output)
    cues = output["transcription"].split("\n\n")
    spoken = [s for s in output["segments"] if s["text"].strip()]
    assert len(cues) == len(spoken)
    for cue, segment in zip(cues, spoken):
        assert cue.splitlines()[2] == f"[{segment['speaker']}] {segment['text'].strip()}"
    assert "words" not in output["segments"][0]  # word_timestamps off: not in the output
    assert set(output["speaker_embeddings"]) == labels
    assert all(len(vector) == 256 for vector in output["speaker_embeddings"].values())
    # What the OpenAI door answers for response_format=diarized_json, checked by OpenAI's SDK.
    ordered = sorted(labels)
    body = TranscriptionDiarized.model_validate(diarized_json(output))
    assert [s.speaker for s in body.segments] == [chr(ord("A") + ordered.index(s["speaker"])) for s in spoken]


def test_a_clip_shorter_than_one_window_and_silence(server, tmp_path):
    """goforward.wav (2.8 s) is shorter than pyannote's 10 s window: one window, so at most its
    3 local speakers (random weights may split the one voice). All silence: no speaker."""
    output = run(server, {"audio": data_uri(SPEECH / "goforward.wav"), "transcription": "vtt"})
    check_labelled(output)
    assert 1 <= output["num_speakers"] <= 3
    assert output["transcription"].startswith("WEBVTT") and "[SPEAKER_0" in output["transcription"]
    assert output["speaker_embeddings"] is None
    silence = audio.encode(np.zeros(20 * SR, dtype=np.float32), SR, tmp_path / "silence.wav")
    output = run(server, {"audio": data_uri(silence), "transcription": "srt"})
    assert (output["num_speakers"], output["speakers"], output["segments"], output["transcription"]) == (0, [], [], "")


def test_contradictory_counts_are_refused_and_the_server_goes_on(server, conversation):
    body = predict(server.url(), {"audio": conversation, "num_speakers": 3, "max_speakers": 2}).json()
    assert body["status"] == "failed"
    assert "num_speakers (3) is larger than max_speakers (2)" in body["error"]
    body = predict(server.url(), {"audio": conversation, "min_speakers": 4, "max_speakers": 2}).json()
    assert "min_speakers (4) is larger than max_speakers (2)" in body["error"]
    response = predict(server.url(), {"audio": conversation, "num_speakers": 0})
    assert response.status_code == 422  # the bundled schema's bounds
    assert server.health() == "READY"
    output = run(server, {"audio": data_uri(SPEECH / "goforward.wav"), "diarize": False})
    assert output["num_speakers"] == 0 and "speaker" not in output["segments"][0]


@pytest.mark.parametrize("case", ["text file", "truncated mp3", "damaged mp3", "unknown language"])
def test_bad_media_fails_clearly_and_leaves_nothing_behind(server, scratch, tmp_path, case):
    make, message = BAD_INPUTS[case]
    body = predict(server.url("127.0.0.1"), make(tmp_path, librivox())).json()
    assert body["status"] == "failed" and message in body["error"], body.get("error")
    server.wait_ready(timeout=5)
    assert not list(scratch.glob("saladcog-waveform-*"))


def test_the_openai_door_answers_diarized_json(server, conversation, tmp_path):
    """The official SDK through the front door: response_format=diarized_json in OpenAI's shape,
    speakers named A, B, …; a plain Whisper door refuses it (tests/test_openai_whisper.py)."""
    wav = tmp_path / "conversation.wav"
    wav.write_bytes(decode_data_uri(conversation)[1])

    async def scenario(sdk, http):
        with wav.open("rb") as f:
            return await sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="diarized_json")

    body = with_door(server.url("127.0.0.1"), scenario, model="whisper-diarize")
    assert isinstance(body, TranscriptionDiarized)
    assert body.segments and all(s.speaker in ("A", "B", "C") for s in body.segments)
    assert body.text.strip()
