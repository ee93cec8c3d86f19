"""Streaming: WhisperStream sends segments as server-sent events while it decodes."""

from __future__ import annotations

import time

import pytest

from client_harness import clips, long_recording
from saladcog.client import Client, ClientError
from saladcog.serve import CogServer


@pytest.fixture(scope="module")
def servers():
    with CogServer("whisper-stream") as stream, CogServer("whisper") as plain:
        stream.wait_ready(timeout=180)
        plain.wait_ready(timeout=180)
        yield stream, plain


def test_segments_arrive_before_completion_and_join_to_the_sync_text(servers, tmp_path):
    stream_server, plain_server = servers
    recording = long_recording(tmp_path / "long.wav", repeats=5)  # ~175 s: six 30 s windows
    inputs = {"audio": recording, "beam_size": 1}
    arrivals, segments = [], []
    with Client(stream_server.url("[::1]")) as client:
        sent_at = time.monotonic()
        for event in client.stream(inputs):
            arrivals.append((time.monotonic(), event.event))
            if event.event == "output":
                segments.append(event.data["chunk"])
            if event.event == "completed":
                final = event.data
    assert final["status"] == "succeeded"
    completed_at = arrivals[-1][0]
    output_times = [t for t, name in arrivals if name == "output"]
    assert [name for _, name in arrivals][0] == "start" and arrivals[-1][1] == "completed"
    assert len(segments) >= 3
    # The first window's segments were on the wire long before the last window was decoded:
    # within the first half of the prediction's time, not at its end (a ratio, not a timing).
    assert output_times[0] - sent_at < 0.5 * (completed_at - sent_at)
    assert final["output"] == segments  # the completed event repeats every chunk, in order
    with Client(plain_server.url("[::1]")) as client:
        sync = client.predict(inputs).output
    joined = " ".join(s["text"].strip() for s in segments if s["text"].strip())
    assert joined == sync["text"]
    assert [(s["start"], s["end"]) for s in segments] == [(s["start"], s["end"]) for s in sync["segments"]]


def test_stream_output_iterator_and_a_runner_without_streaming(servers):
    stream_server, plain_server = servers
    with Client(stream_server.url("[::1]")) as client:
        chunks = list(client.stream_output({"audio": clips()[1]}))
    assert "he was not" in " ".join(c["text"] for c in chunks).lower()  # clip 0880
    with Client(plain_server.url("[::1]")) as client, pytest.raises(ClientError, match="does not support streaming"):
        list(client.stream_output({"audio": clips()[1]}))
