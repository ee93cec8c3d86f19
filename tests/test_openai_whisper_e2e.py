"""The OpenAI front door end to end: ipv6_entrypoint.sh in COG_IPV6_MODE=openai, uvicorn on [::],
the Whisper runner (tiny.en) under the real Cog server, raw HTTP over [::1] where a client must
misbehave: an upload cut off midway leaves nothing behind, a header flood is refused while the
head is read, and a caller who hangs up frees the instance for its retry."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import openai
import pytest

from client_harness import long_recording
from saladcog import audio
from saladcog.serve import CogServer
from test_openai_entrypoint import front_door_pid

API_KEY = "sk-test-front-door"
MAX_UPLOAD_MB = 5


@pytest.fixture(scope="module")
def spool(tmp_path_factory):
    """TMPDIR of the front door: where uploads are spooled, so tests can see them go."""
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(spool):
    env = {"SALADCOG_OPENAI_API_KEY": API_KEY, "SALADCOG_OPENAI_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
           "TMPDIR": str(spool)}
    with CogServer("whisper", front_door="openai", env=env) as server:
        server.wait_ready(timeout=180)
        yield server


def spooled_files(server, spool) -> list:
    """Uploads the front door still holds: its open files in its spool folder (Starlette's
    anonymous temporary files) and the upload links it issued (saladcog.handoff)."""
    held = []
    for fd in Path(f"/proc/{front_door_pid(server)}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(spool)):
            held.append(target)
    return held + list(spool.glob("saladcog-uploads-*/*"))


def wait_ready(server, timeout: float = 5.0) -> str:
    """The health once READY (coglet frees its slot just after it answers), or at the deadline."""
    deadline = time.monotonic() + timeout
    while server.health() != "READY" and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.health()


@pytest.fixture(autouse=True)
def left_ready(server, spool):
    """After every test: the server is READY and the door holds no upload."""
    yield
    assert wait_ready(server) == "READY"
    assert spooled_files(server, spool) == []


def test_upload_cut_off_midway_leaves_nothing(server, spool):
    """The caller hangs up halfway through a 2 MB upload: the partial file is deleted."""
    head = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.wav\"\r\n\r\n")
    with socket.create_connection(("::1", server.port)) as sock:
        # Past Starlette's 1 MiB in memory, so that the part is spooled to disk.
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 3000000\r\n\r\n" + head + b"\0" * 1_500_000)
        deadline = time.monotonic() + 10
        while not spooled_files(server, spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert spooled_files(server, spool), "the upload was not being spooled"
    deadline = time.monotonic() + 10
    while spooled_files(server, spool) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert spooled_files(server, spool) == []


def test_header_flood_is_refused_before_it_is_held(server):
    """20,000 headers (~600 KB) in one request: refused (400) while reading the head, not held."""
    flood = b"".join(b"X-Flood-%05d: %s\r\n" % (i, b"x" * 16) for i in range(20_000))
    with socket.create_connection(("::1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
                     + b"\r\n" + flood + b"\r\n")
        status = sock.makefile("rb").readline()
    assert status.split()[1] == b"400", status
    with openai.OpenAI(base_url=f"{server.url('[::1]')}/v1", api_key=API_KEY, max_retries=0) as client:
        assert client.models.list().data  # and the next request is served


def test_a_caller_who_hangs_up_frees_the_instance(server, clips, tmp_path):
    """The caller of a long transcription hangs up: the door cancels its prediction, the slot is
    free within seconds (not at the end of the transcription), and the caller's retry succeeds."""
    # ~3 min of speech (tens of seconds of work here) in MP3, under this server's 5 MB limit
    samples = audio.decode(long_recording(tmp_path / "long.wav", repeats=5), 16000)
    recording = audio.encode(samples, 16000, tmp_path / "long.mp3", "mp3")
    body = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.mp3\"\r\n\r\n"
            + recording.read_bytes() + b"\r\n--b--\r\n")
    with socket.create_connection(("::1", server.port)) as sock:
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + API_KEY.encode() + b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + 30
        while server.health() != "BUSY" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.health() == "BUSY"
        time.sleep(0.5)  # well into the transcription
    hung_up = time.monotonic()
    assert wait_ready(server, timeout=20) == "READY"
    freed_after = time.monotonic() - hung_up
    assert freed_after < 5.0, freed_after  # the whole transcription takes far longer on 2 cores
    with openai.OpenAI(base_url=f"{server.url('[::1]')}/v1", api_key=API_KEY, max_retries=0) as client:
        assert client.audio.transcriptions.create(model="whisper-1", file=clips[0].wav).text
