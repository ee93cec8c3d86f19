"""Shared fixtures: the speech clips, a real Cog server per runner, a loopback file server."""

from __future__ import annotations

import dataclasses
import http.server
import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from saladcog import audio, weights
from saladcog.asr import model as asr_model
from saladcog.asr.transcribe import TranscribeOptions
from saladcog.serve import CogServer

DATA = Path(__file__).parent / "data"
SPEECH = DATA / "speech"
# Servers under test fetch URL inputs from the loopback file servers below; by default saladcog
# refuses loopback (and every other non-public address) before connecting.
LOOPBACK_FETCHES = {"SALADCOG_FETCH_ALLOW_NETWORKS": "127.0.0.0/8,::1/128"}


@dataclasses.dataclass(frozen=True)
class Clip:
    wav: Path
    text: str

    @property
    def samples(self) -> np.ndarray:
        return audio.decode(self.wav, 16000)


def librivox() -> list[Clip]:
    return [
        Clip(wav, wav.with_suffix(".txt").read_text().strip())
        for wav in sorted((SPEECH / "librivox").glob("*.wav"))
    ]


# (seconds of silence before, after) each LibriVox clip in its 22.05 kHz version: all shorter
# than MIN_SILENCE_SECONDS, some longer than the silence cut's padding (an 11.27 s file of
# issue 14 ended in 0.39 s of silence, of which the old cut took 53 ms).
EDGE_SILENCES = [(0.0, 0.39), (0.3, 0.0), (0.02, 0.6), (0.5, 0.1), (1.2, 1.5)]


def resampled_with_edges(folder: Path) -> list[Path]:
    """Each LibriVox clip resampled to 22.05 kHz (PyAV), with the short digital silences of
    EDGE_SILENCES at its edges, as WAV files in `folder`."""
    paths = []
    for clip, (before, after) in zip(librivox(), EDGE_SILENCES):
        samples = audio.decode(clip.wav, 22050)
        silence = [np.zeros(round(s * 22050), dtype=np.float32) for s in (before, after)]
        path = folder / f"{clip.wav.stem}-22k.wav"
        paths.append(audio.encode(np.concatenate([silence[0], samples, silence[1]]), 22050, path))
    return paths


def engine_segments(model: asr_model.LoadedModel, path: Path) -> list:
    """faster-whisper's own transcript of the file, with the options saladcog's defaults
    (TranscribeOptions()) give it: what saladcog must equal where nothing is cut."""
    options = TranscribeOptions()
    segments, _ = model.whisper.transcribe(str(path), **options.engine_arguments(options.language))
    return list(segments)


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: the form of the reference transcripts."""
    text = text.lower().replace("mr.", "mister").replace("mrs.", "missus")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


# coglet frees its one slot just after it answers: a 409 this soon after the previous answer
# is that race (a loaded machine widens it), not a busy server.
SLOT_RELEASE_S = 2.0


def predict(base_url: str, inputs: dict, timeout: float = 300.0) -> httpx.Response:
    deadline = time.monotonic() + SLOT_RELEASE_S
    while True:
        response = httpx.post(f"{base_url}/predictions", json={"input": inputs}, timeout=timeout)
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


@pytest.fixture(scope="session")
def clips() -> list[Clip]:
    return librivox()


@pytest.fixture(scope="session")
def tiny_en() -> asr_model.LoadedModel:
    """The embedded tiny.en, loaded in this process."""
    return asr_model.load(weights.whisper_model_dir())


@pytest.fixture(scope="session")
def whisper_server():
    """The Whisper runner (embedded tiny.en) under the real Cog server on [::]."""
    with CogServer("whisper", env=LOOPBACK_FETCHES) as server:
        server.wait_ready(timeout=180)
        yield server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def file_server(tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving a scratch folder: (folder, base URL)."""
    root = tmp_path_factory.mktemp("served")
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def aws(tmp_path_factory):
    """S3 and SQS on loopback (moto's server mode), for boto3 as against AWS."""
    from tests.aws_standin import AwsStandIn

    with AwsStandIn(tmp_path_factory.mktemp("aws")) as standin:
        yield standin
