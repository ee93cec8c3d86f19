"""`saladcog queue` against a loopback stand-in of SaladCloud's queue API (the real
salad-cloud-sdk pointed at it), jobs run by the stand-in worker through the queue route on the
real Cog server (tiny.en), inputs in S3 on loopback (moto); and the webhook receiver."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from saladcog.cli import main
from saladcog.queue.state import STATE_FILE, State
from saladcog.queue.webhooks import Verifier, receiver_app
from saladcog.serve import CogServer, free_port
from tests.conftest import librivox
from tests.queue_api_standin import API_KEY, WEBHOOK_SECRET, QueueApiStandIn, signed_event
from tests.queue_door import QueueDoor, ThreadServer
from tests.queue_standin import StandInWorker
from tests.test_queue_route import LOOPBACK_FETCH, assert_transcript, ready

WHERE = ["--organization", "org-a", "--project", "proj-a"]


@pytest.fixture(scope="module")
def api():
    standin = QueueApiStandIn()
    with ThreadServer(standin.app) as server:
        standin.url = f"http://127.0.0.1:{server.port}"
        yield standin


@pytest.fixture(scope="module")
def whisper_door():
    with CogServer("whisper", env=LOOPBACK_FETCH) as server:
        server.wait_ready(timeout=180)
        with QueueDoor(server.url("127.0.0.1")) as door:
            door.cog_port = server.port
            yield door


@pytest.fixture
def env(api, aws, monkeypatch):
    for name, value in {**aws.env, "SALAD_API_KEY": API_KEY, "SALAD_API_URL": api.url,
                        "SALAD_WEBHOOK_SECRET": WEBHOOK_SECRET}.items():
        monkeypatch.setenv(name, value)
    aws.client("s3").create_bucket(Bucket="queue-inputs")


def test_submit_collect_and_run_again_nothing_resubmitted_nothing_lost(api, whisper_door, env, file_server,
                                                                        tmp_path):
    root, base = file_server
    clips = librivox()[:3]
    folder = tmp_path / "talks"
    folder.mkdir()
    for clip in clips:
        (folder / clip.wav.name).write_bytes(clip.wav.read_bytes())
    (folder / "minutes.wav").write_text("not audio, whatever the name says\n")
    (root / "from-url.wav").write_bytes(librivox()[3].wav.read_bytes())
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# one URL a line\n{base}/from-url.wav\n")
    out = tmp_path / "results"
    webhook_port = free_port()

    assert main(["queue", "create", "transcripts", *WHERE]) == 0
    service = api.service("transcripts")
    run = ["queue", "run", "transcripts", str(folder), str(urls), "--out", str(out), *WHERE,
           "--storage", "s3://queue-inputs/in/", "--subtitles", "srt", "--poll", "30", "--deadline", "300",
           "--webhook-url", f"http://127.0.0.1:{webhook_port}/", "--webhook-port", str(webhook_port)]
    with StandInWorker(service, whisper_door.port, "/queue", lambda: ready(whisper_door.cog_port)):
        started = time.monotonic()
        assert main(run) == 1  # one input is not audio
        # Each ended job's signed webhook cut the 30 s poll short.
        assert time.monotonic() - started < 60
    assert api.job_creations == 5
    assert sorted(status for _, status in api.webhooks_sent) == [200] * 5
    for stem, clip in [*((c.wav.stem, c) for c in clips), ("from-url", librivox()[3])]:
        result = (out / f"{stem}.json").read_text()
        assert_transcript(json.loads(result)["text"], clip.text)
        assert "-->" in (out / f"{stem}.srt").read_text()
    assert not (out / "minutes.json").exists()
    state = State.load(out, "transcripts")
    assert state.entries["minutes"].status == "failed"
    assert "audio" in state.entries["minutes"].error
    collected = {p.name: p.stat().st_mtime_ns for p in out.iterdir()
                 if p.suffix in (".json", ".srt") and p.name != STATE_FILE}
    assert len(collected) == 8

    # Run again: nothing is submitted, nothing collected a second time.
    assert main([*run, "--poll", "0.5"]) == 1
    assert api.job_creations == 5
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()
            if p.suffix in (".json", ".srt") and p.name != STATE_FILE} == collected

    # --retry-failed submits the failed input again, and only it.
    with StandInWorker(service, whisper_door.port, "/queue", lambda: ready(whisper_door.cog_port)):
        assert main([*run, "--poll", "0.5", "--retry-failed"]) == 1
    assert api.job_creations == 6


def test_local_files_without_storage_are_refused_in_one_line(api, env, tmp_path, capsys):
    folder = tmp_path / "talks"
    folder.mkdir()
    (folder / "a.wav").write_bytes(librivox()[0].wav.read_bytes())
    assert main(["queue", "create", "refusals", *WHERE]) == 0
    assert main(["queue", "run", "refusals", str(folder), "--out", str(tmp_path / "out"), *WHERE]) == 2
    assert "local files need --storage" in capsys.readouterr().err
    assert api.service("refusals").jobs == {}


@pytest.fixture
def receiver():
    seen: list[str] = []
    with ThreadServer(receiver_app(Verifier(WEBHOOK_SECRET), seen.append)) as server:
        yield f"http://127.0.0.1:{server.port}/", seen


def test_webhook_receiver_accepts_salads_signed_events_once(receiver):
    url, seen = receiver
    body, headers = signed_event("job-1", "succeeded")
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    assert seen == ["job-1"]
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 401 and "already received" in replay.json()["error"]
    assert seen == ["job-1"]


@pytest.mark.parametrize("case", ["unsigned", "wrong secret", "stale", "tampered"])
def test_webhook_receiver_refuses_what_salad_did_not_send_now(receiver, case):
    url, seen = receiver
    other_secret = "whsec_" + "YW5vdGhlci1zZWNyZXQtYWx0b2dldGhlcg=="
    body, headers = signed_event("job-2", "succeeded", secret=other_secret if case == "wrong secret" else WEBHOOK_SECRET,
                                 at=time.time() - 600 if case == "stale" else None)
    if case == "unsigned":
        headers = {"content-type": "application/json"}
    if case == "tampered":
        body = body.replace(b"job-2", b"job-3")
    r = httpx.post(url, content=body, headers=headers)
    assert r.status_code == 401 and r.json()["error"].startswith("webhook refused")
    assert seen == []
