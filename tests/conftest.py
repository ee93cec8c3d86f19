"""Shared fixtures: the speech clips, a real Cog server per runner, a loopback file server."""

from __future__ import annotations

import dataclasses
import http.server
import re
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from saladcog import audio, weights
from saladcog.asr import model as asr_model
from saladcog.serve import CogServer

DATA = Path(__file__).parent / "data"
SPEECH = DATA / "speech"


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


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: the form of the reference transcripts."""
    text = text.lower().replace("mr.", "mister").replace("mrs.", "missus")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def predict(base_url: str, inputs: dict, timeout: float = 300.0) -> httpx.Response:
    return httpx.post(f"{base_url}/predictions", json={"input": inputs}, timeout=timeout)


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
    with CogServer("whisper") as server:
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
