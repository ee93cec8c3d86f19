"""The TTS runners under the real Cog server (coglet) with the tiny official-format weights:
output files do not pile up in the server's temporary folder, a reference voice arrives only as
sent (never as a path on the server), and a long reference is read only as far as the model
uses it, so the worker's memory does not follow the file's length."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import LOOPBACK_FETCHES, predict
import openvoice_fixtures
from openvoice_fixtures import openvoice_weights  # noqa: F401  (fixture)
from saladcog import audio
from saladcog.client import data_uri
from saladcog.serve import CogServer
from tests import metavoice_tiny

SR = 16000
TEXT = "Hello world, the cat sat on the mat. " * 3


def worker_peak_mb(server: CogServer) -> float:
    """Peak resident memory (VmHWM) of the coglet worker, the child process that runs run()."""
    children = [c for task in Path(f"/proc/{server.process.pid}/task").iterdir()
                for c in (task / "children").read_text().split()]  # coglet starts it from any thread
    peaks = []
    for child in children:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    assert peaks, "no worker process found"
    return max(peaks)


@pytest.fixture(scope="module")
def hour_long_reference(clips, tmp_path_factory) -> Path:
    """A LibriVox clip, then silence to one hour: 1 MB of FLAC that decodes to 115 MB at 16 kHz."""
    speech = clips[0].samples
    minute = np.zeros(SR * 60, dtype=np.float32)
    path = tmp_path_factory.mktemp("reference") / "hour.flac"
    return audio.encode([speech, minute[: SR * 60 - speech.size], *[minute] * 59], SR, path, "flac")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def openvoice(openvoice_weights, scratch):  # noqa: F811
    env = {"TMPDIR": str(scratch), **openvoice_fixtures.server_env(openvoice_weights), **LOOPBACK_FETCHES}
    with CogServer("openvoice", env=env) as server:
        server.wait_ready(timeout=180)
        yield server


@pytest.fixture(scope="module")
def metavoice(tmp_path_factory):
    weights = metavoice_tiny.write_all(tmp_path_factory.mktemp("metavoice-weights"))
    env = weights.server_env()
    with CogServer("metavoice", env=env) as server:
        server.wait_ready(timeout=180)
        yield server


def test_outputs_do_not_pile_up_in_the_temporary_folder(openvoice, scratch, clips, file_server):
    """Successes and failures one after another: what stays is the last answer's file only."""
    _, base = file_server
    requests = [
        ({"text": TEXT, "seed": 1}, "succeeded"),
        ({"text": TEXT, "reference_audio": f"{base}/missing/voice.wav"}, "failed"),
        ({"text": TEXT, "reference_audio": data_uri(clips[1].wav), "output_format": "mp3"}, "succeeded"),
        ({"text": TEXT, "reference_audio": str(clips[1].wav.resolve())}, "failed"),
        ({"text": TEXT, "seed": 2}, "succeeded"),
    ]
    for inputs, status in requests:
        body = predict(openvoice.url(), inputs).json()
        assert body["status"] == status, body.get("error")
        openvoice.wait_ready(timeout=10)
    left = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*"))
    assert len(left) == 2 and left[0].startswith("saladcog-output-") and left[1].endswith("/speech.wav"), left


@pytest.mark.parametrize("runner", ["openvoice", "metavoice"])
def test_a_path_on_the_server_is_not_a_reference(request, runner, clips):
    server = request.getfixturevalue(runner)
    for value in (str(clips[1].wav.resolve()), "/no/such/voice.wav"):
        body = predict(server.url(), {"text": "Hello there.", "reference_audio": value}).json()
        assert body["status"] == "failed", body
        assert "reference audio must be sent as a data URI or an http(s) URL" in body["error"], body["error"]
        assert "voice" not in body["error"] and "librivox" not in body["error"], body["error"]
        server.wait_ready(timeout=10)


@pytest.mark.parametrize("runner", ["openvoice", "metavoice"])
def test_an_hour_long_reference_is_read_only_as_far_as_used(request, runner, hour_long_reference):
    """Decoded whole, the hour took hundreds of MB (3.5 GB for three hours); read for its
    first two minutes, the worker's peak memory barely moves."""
    server = request.getfixturevalue(runner)
    warm = predict(server.url(), {"text": "Hello there.", "seed": 3}).json()
    assert warm["status"] == "succeeded", warm.get("error")
    before = worker_peak_mb(server)
    body = predict(server.url(), {"text": "Hello there.", "reference_audio": data_uri(hour_long_reference), "seed": 3}).json()
    assert body["status"] == "succeeded", body.get("error")
    grown = worker_peak_mb(server) - before
    assert grown < 100, f"the worker's peak memory grew by {grown:.0f} MB"
    assert os.path.getsize(hour_long_reference) < 2_000_000
