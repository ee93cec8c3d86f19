"""Hostile file inputs through the real Cog server (coglet) and real HTTP: a path on the server,
URLs whose body never ends, trickles or is cancelled, files longer than the server's cap. Each
fails with a message in the caller's terms, leaves no file behind, and the server stays READY
for the next request."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
import uuid

import httpx
import numpy as np
import pytest

from conftest import predict
from saladcog import audio
from saladcog.client import Client, PredictionError, data_uri
from saladcog.serve import CogServer

MAX_BYTES = 4_000_000
FETCH_SECONDS = 6
MAX_AUDIO_SECONDS = 600


class HostileFiles(http.server.BaseHTTPRequestHandler):
    """/endless: a body that never ends (64 KB every 20 ms, at most 30 s); /trickle: 200 bytes
    every 0.2 s; /big: a 5 MB body with its Content-Length; /text.wav: a text file;
    /redirect?<url>: a 302 to <url>. Each request's bytes sent and whether the client hung up
    are kept in `sent`."""

    sent: dict[str, dict] = {}

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        record = HostileFiles.sent.setdefault(self.path, {"bytes": 0, "hung_up_at": None})
        route = self.path.split("?")[0]
        if route == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.path.partition("?")[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/text.wav":
            body = b"This is a text file, not a recording.\n" * 20
            self._headers(len(body))
            self.wfile.write(body)
        elif route == "/big.wav":
            self._headers(5_000_000)
            self._stream(record, b"\0" * 65536, 0.0, total=5_000_000)
        elif route == "/endless.wav":
            self._headers(None)
            self._stream(record, b"\0" * 65536, 0.02)
        elif route == "/trickle.wav":
            self._headers(None)
            self._stream(record, b"\0" * 200, 0.2)
        else:
            self.send_error(404)

    def _headers(self, length: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _stream(self, record: dict, chunk: bytes, pause: float, total: int | None = None) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (total is None or record["bytes"] < total):
            try:
                self.wfile.write(chunk)
                self.wfile.flush()
            except OSError:
                record["hung_up_at"] = time.monotonic()
                return
            record["bytes"] += len(chunk)
            time.sleep(pause)


@pytest.fixture(scope="module")
def hostile():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileFiles)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The server's temporary folder (TMPDIR): where coglet and saladcog write input files."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(scratch):
    env = {
        "TMPDIR": str(scratch),
        "SALADCOG_MAX_INPUT_BYTES": str(MAX_BYTES),
        "SALADCOG_FETCH_TIMEOUT": str(FETCH_SECONDS),
        "SALADCOG_MAX_AUDIO_SECONDS": str(MAX_AUDIO_SECONDS),
        # The hostile server is on 127.0.0.1; [::1] stays refused, as every non-public address is.
        "SALADCOG_FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
    }
    with CogServer("whisper", env=env) as server:
        server.wait_ready(timeout=180)
        yield server


def leftovers(scratch) -> list[str]:
    return sorted(os.listdir(scratch))


def failed(server, inputs: dict, host: str = "[::1]") -> str:
    body = predict(server.url(host), inputs, timeout=60).json()
    assert body["status"] == "failed", body
    return body["error"]


def assert_serves_next(server, clips, scratch) -> None:
    server.wait_ready(timeout=10)
    body = predict(server.url("127.0.0.1"), {"audio": data_uri(clips[1].wav)}).json()
    assert body["status"] == "succeeded", body.get("error")
    assert "young man" in body["output"]["text"]
    assert leftovers(scratch) == []


def test_a_path_on_the_server_is_refused_alike_whether_it_exists_or_not(server, clips, scratch, tmp_path):
    existing = str(clips[0].wav.resolve())
    sent = [existing, str(tmp_path / "missing.wav"), f"file://{existing}", clips[0].wav.name, "HTTP:/x.wav", "~/x.wav"]
    errors = [failed(server, {"audio": value}) for value in sent]
    assert len(set(errors)) == 1, errors
    assert "audio must be sent as a data URI or an http(s) URL" in errors[0]
    assert "/" not in errors[0].partition("InputError")[2].replace("http(s)", ""), errors[0]
    assert_serves_next(server, clips, scratch)


def test_errors_name_the_url_or_the_upload_never_a_temporary_file(server, clips, scratch, hostile, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("This is a text file, not a recording.\n" * 20)
    error = failed(server, {"audio": data_uri(text)})
    assert "the uploaded audio is not an audio or video file" in error, error
    error = failed(server, {"audio": f"{hostile}/text.wav?signature=SECRET"})
    assert f"{hostile}/text.wav is not an audio or video file" in error, error
    for error in (error, failed(server, {"audio": f"{hostile}/gone.mp3"})):
        assert "SECRET" not in error and "tmp" not in error and "notes" not in error, error
    assert "HTTP 404" in error and f"{hostile}/gone.mp3" in error, error
    assert_serves_next(server, clips, scratch)


def test_the_client_says_failed_once_in_the_runners_words(server, clips, scratch, tmp_path):
    """coglet wraps the error as "Prediction failed: Prediction failed: AudioError: …"; the
    client's message keeps the runner's words and says "failed" once."""
    text = tmp_path / "notes.wav"
    text.write_text("This is a text file, not a recording.\n" * 20)
    with Client(server.url("[::1]")) as client, pytest.raises(PredictionError) as caught:
        client.predict({"audio": text})
    message = str(caught.value)
    assert message.count("failed") == 1, message
    assert message.endswith("failed: the uploaded audio is not an audio or video file that FFmpeg can read "
                            "(Invalid data found when processing input)"), message
    assert_serves_next(server, clips, scratch)


def test_an_address_off_the_allow_list_is_refused_before_connecting(server, clips, scratch, hostile):
    """[::1] is not on this server's list: sent directly or by a redirect from an
    allowed server, it is refused with one message, and nothing connects to the listener there."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.bind(("::1", 0))
        listener.listen(8)
        listener.setblocking(False)
        target = f"http://[::1]:{listener.getsockname()[1]}/talk.wav"
        for url, name in [(target, target), (f"{hostile}/redirect?{target}", f"{hostile}/redirect")]:
            error = failed(server, {"audio": url})
            assert error.endswith(f"could not fetch {name}: its address is not allowed "
                                  "(SALADCOG_FETCH_ALLOW_NETWORKS)"), error
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection ever reached it
    # An IPv4-mapped literal is judged by the IPv4 address it stands for, here an allowed one.
    mapped = hostile.replace("127.0.0.1", "[::ffff:127.0.0.1]")
    assert f"{mapped}/text.wav is not an audio or video file" in failed(server, {"audio": f"{mapped}/text.wav"})
    assert_serves_next(server, clips, scratch)


@pytest.mark.parametrize("route", ["/endless.wav", "/big.wav"])
def test_a_body_larger_than_the_cap_is_refused(server, clips, scratch, hostile, route):
    started = time.monotonic()
    error = failed(server, {"audio": f"{hostile}{route}"})
    assert f"{hostile}{route} is larger than 4,000,000 bytes" in error, error
    assert "SALADCOG_MAX_INPUT_BYTES" in error
    assert time.monotonic() - started < FETCH_SECONDS
    assert HostileFiles.sent.get(route, {"bytes": 0})["bytes"] <= MAX_BYTES + 4 * 65536
    assert_serves_next(server, clips, scratch)


def test_an_upload_larger_than_the_cap_is_refused(server, clips, scratch):
    big = "data:audio/wav;base64," + "A" * (MAX_BYTES // 3 * 4 + 400)
    error = failed(server, {"audio": big})
    assert "the uploaded audio is larger than 4,000,000 bytes" in error, error
    assert_serves_next(server, clips, scratch)


def test_a_trickling_download_stops_at_the_deadline(server, clips, scratch, hostile):
    started = time.monotonic()
    error = failed(server, {"audio": f"{hostile}/trickle.wav"})
    assert f"could not fetch {hostile}/trickle.wav: it took longer than {FETCH_SECONDS} s" in error, error
    assert FETCH_SECONDS - 0.5 < time.monotonic() - started < FETCH_SECONDS + 5
    assert_serves_next(server, clips, scratch)


def test_cancel_stops_a_download_and_removes_its_file(server, clips, scratch, hostile):
    """The prediction is cancelled while the body still flows: it ends `canceled` at once, the
    connection to the file's server is closed and the partial file is gone."""
    route = "/endless.wav?cancel"
    prediction = f"cancel-{uuid.uuid4().hex[:8]}"
    answers: list[dict] = []

    def run() -> None:
        response = httpx.put(
            f"{server.url()}/predictions/{prediction}",
            json={"input": {"audio": f"{hostile}{route}"}},
            timeout=60,
        )
        answers.append(response.json())

    caller = threading.Thread(target=run)
    caller.start()
    deadline = time.monotonic() + 10
    while HostileFiles.sent.get(route, {"bytes": 0})["bytes"] < 256 * 1024 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(name.startswith("saladcog-input-") for name in leftovers(scratch))
    cancelled_at = time.monotonic()
    httpx.post(f"{server.url()}/predictions/{prediction}/cancel", timeout=10)
    caller.join(10)
    assert answers and answers[0]["status"] == "canceled", answers
    assert time.monotonic() - cancelled_at < 3
    record = HostileFiles.sent[route]
    hangup_deadline = time.monotonic() + 5
    while record["hung_up_at"] is None and time.monotonic() < hangup_deadline:
        time.sleep(0.05)
    assert record["hung_up_at"] is not None and record["hung_up_at"] - cancelled_at < 3
    assert record["bytes"] < MAX_BYTES
    assert_serves_next(server, clips, scratch)


def test_audio_longer_than_the_cap_is_refused_from_its_header(server, clips, scratch, tmp_path):
    path = tmp_path / "long.flac"
    minute = np.zeros(16000 * 60, dtype=np.float32)
    audio.encode([minute] * 11, 16000, path, "flac")  # 11 minutes of silence, a few kB
    error = failed(server, {"audio": data_uri(path)})
    assert "the uploaded audio is too long: its header says 0:11:00" in error, error
    assert "at most 0:10:00" in error and "SALADCOG_MAX_AUDIO_SECONDS" in error
    assert_serves_next(server, clips, scratch)


def test_requests_leave_the_temporary_folder_as_it_was(server, clips, scratch, hostile, tmp_path):
    """Successes and failures of every kind: uploads, URLs, refusals, a 404, bad audio."""
    before = leftovers(scratch)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases = [
        {"audio": data_uri(clips[0].wav)},
        {"audio": data_uri(empty)},
        {"audio": f"{hostile}/text.wav"},
        {"audio": f"{hostile}/missing.wav"},
        {"audio": str(clips[1].wav.resolve())},
        {"audio": data_uri(clips[2].wav)},
    ]
    for inputs in cases:
        predict(server.url(), inputs, timeout=60)
    assert leftovers(scratch) == before
