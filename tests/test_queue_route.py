"""The queue route end to end: a stand-in queue service and worker (the worker binary's contract)
deliver jobs to the route, which runs them on the real Cog server (tiny.en Whisper; tiny
OpenVoice weights for speech), with outputs stored in S3 on loopback (moto)."""

from __future__ import annotations

import asyncio
import difflib
import os
import signal
import subprocess
import wave

import httpx
import numpy as np
import pytest

from openvoice_fixtures import openvoice_weights, server_env  # noqa: F401  (fixture)
from saladcog import probe
from saladcog.serve import CogServer, free_port
from saladcog.storage import Storage
from tests.conftest import librivox, normalize
from tests.queue_door import QueueDoor
from tests.queue_standin import QueueService, StandInWorker, wait_until

# Whisper loads inputs from the file server on loopback (refused by default once URL fetching
# guards private addresses).
LOOPBACK_FETCH = {"SALADCOG_FETCH_ALLOW_NETWORKS": "127.0.0.0/8"}
# The longest speech job: this many copies of the five LibriVox clips (~25 s each copy): 200 s.
LONGEST_COPIES = 8


def ready(port: int) -> bool:
    """The readiness probe the container group runs (probe.py: /health-check says READY)."""
    try:
        return probe.health("::1", port, timeout=2.0) == "READY"
    except (OSError, ValueError):
        return False


def write_wav(path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def assert_transcript(got: str, reference: str) -> None:
    if len(reference) < 400:  # one clip: tiny.en misspells a word here and there
        assert difflib.SequenceMatcher(None, normalize(got), normalize(reference), autojunk=False).ratio() > 0.8, \
            (got, reference)
    else:  # copies of the five clips: tiny.en leaves out some repeats, but every sentence is there
        assert all(words in normalize(got) for words in ("dashwood", "ill disposed", "selfish", "respectable",
                                                          "amiable himself")), got


@pytest.fixture(scope="module")
def whisper():
    server = CogServer("whisper", env=LOOPBACK_FETCH)
    server.start()
    server.wait_ready(timeout=180)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def whisper_door(whisper):
    with QueueDoor(whisper.url("127.0.0.1")) as door:
        yield door


@pytest.fixture(scope="module")
def speech_jobs(file_server):
    """(inputs, expected words) for speech of different lengths, served over HTTP on loopback."""
    root, base = file_server
    clips = librivox()
    jobs = [({"audio": f"{base}/queue-{c.wav.name}"}, c.text) for c in clips]
    for c in clips:
        (root / f"queue-{c.wav.name}").write_bytes(c.wav.read_bytes())
    pause = np.zeros(8000, dtype=np.float32)
    one_copy = np.concatenate([np.concatenate([c.samples, pause]) for c in clips])
    one_text = " ".join(c.text for c in clips)
    for copies in (1, 2, 4, LONGEST_COPIES):
        name = f"queue-long-{copies}.wav"
        write_wav(root / name, np.tile(one_copy, copies))
        jobs.append(({"audio": f"{base}/{name}"}, " ".join([one_text] * copies)))
    return jobs


def test_mixed_jobs_each_end_once_with_the_right_output(whisper, whisper_door, speech_jobs, file_server, tmp_path):
    root, base = file_server
    (root / "queue-notes.txt").write_text("these are meeting notes, not audio\n" * 50)
    (root / "queue-noise.bin").write_bytes(np.random.default_rng(1).bytes(40_000))
    service = QueueService()
    speech = {service.submit({"input": inputs}): text for inputs, text in speech_jobs}
    speech.update({service.submit(inputs): text for inputs, text in speech_jobs[:7]})  # bare inputs too
    speech.update({service.submit({"input": {**inputs, "transcription": "srt"}}): text
                   for inputs, text in speech_jobs[:7]})
    speech.update({service.submit({"input": {**inputs, "transcription": "vtt"}}): text
                   for inputs, text in speech_jobs[:2]})
    not_audio = [service.submit({"input": {"audio": f"{base}/queue-notes.txt"}}),
                 service.submit({"input": {"audio": f"{base}/queue-noise.bin"}}),
                 service.submit({"audio": "data:audio/wav;base64,AAAAAAAA"})]
    empty = service.submit({})
    misspelt = service.submit({"input": {"audio": speech_jobs[0][0]["audio"], "languag": "fr"}})
    with StandInWorker(service, whisper_door.port, "/queue", lambda: ready(whisper.port)):
        assert service.wait_done(timeout=400), {j.id: j.status for j in service.jobs.values()}

    for job_id, text in speech.items():
        job = service.jobs[job_id]
        assert (job.status, job.deliveries, job.completions) == ("succeeded", 1, 1), job
        assert job.output["status"] == "succeeded"
        assert_transcript(job.output["output"]["text"], text)
    for job_id in not_audio:
        job = service.jobs[job_id]
        assert (job.status, job.deliveries, job.answers) == ("succeeded", 1, [200])  # over: not retried
        assert job.output["status"] == "failed"
        assert "not an audio or video file" in job.output["error"] or "has no audio stream" in job.output["error"]
        assert not job.output["error"].startswith("Prediction failed")  # the runner's words, once
    assert service.jobs[empty].output == {"status": "failed", "error": "invalid input: audio: Field required"}
    assert "unknown input(s) languag" in service.jobs[misspelt].output["error"]
    assert service.jobs[misspelt].output["error"].count("language") == 1  # names what the model takes
    assert len(service.jobs) == 30
    assert ready(whisper.port)


def test_a_job_delivered_again_while_running_does_not_start_twice(whisper, whisper_door, speech_jobs):
    inputs, text = speech_jobs[-2]  # 4 copies: ~100 s of speech
    headers = {"Salad-Job-Id": "job-redelivered-1"}
    attached_before = whisper_door.runs.attached if hasattr(whisper_door.app.state, "queue_runs") else 0

    async def deliver_twice():
        async with httpx.AsyncClient(timeout=None) as http:
            first = asyncio.create_task(http.post(whisper_door.url, json={"input": inputs}, headers=headers))
            await asyncio.to_thread(wait_until, lambda: not ready(whisper.port), 60, "the first delivery to run")
            second = await http.post(whisper_door.url, json={"input": inputs}, headers=headers)
            return await first, second

    first, second = asyncio.run(deliver_twice())
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()  # one prediction, one answer: same metrics, same text
    assert_transcript(first.json()["output"]["text"], text)
    assert whisper_door.runs.attached == attached_before + 1
    starts = [line for line in whisper.log_tail(100_000).splitlines()
              if '"Starting prediction"' in line and '"job-redelivered-1"' in line]
    assert len(starts) == 1  # coglet's own log: one prediction started for the job


def test_a_job_arriving_while_cog_is_busy_waits_for_the_slot(whisper, whisper_door, speech_jobs):
    """coglet answers 409 while its one slot is taken, and for a moment after it answers: the
    route waits for the slot instead of spending one of the job's few retries."""
    inputs, _ = speech_jobs[5]  # one copy of the clips: ~25 s of speech

    async def busy_then_job():
        async with httpx.AsyncClient(timeout=None) as http:
            other = asyncio.create_task(http.put(f"{whisper.url('127.0.0.1')}/predictions/someone-else",
                                                 json={"input": inputs}))
            await asyncio.to_thread(wait_until, lambda: not ready(whisper.port), 60, "the other prediction")
            job = await http.post(whisper_door.url, json={"input": inputs}, headers={"Salad-Job-Id": "while-busy"})
            # Back to back, as the worker sends them: each lands in coglet's slot-release moment.
            more = [await http.post(whisper_door.url, json={"input": speech_jobs[1][0]},
                                    headers={"Salad-Job-Id": f"back-to-back-{i}"}) for i in range(4)]
            return await other, job, more

    other, job, more = asyncio.run(busy_then_job())
    assert other.json()["status"] == "succeeded"
    assert (job.status_code, job.json()["status"]) == (200, "succeeded")
    assert [(r.status_code, r.json()["status"]) for r in more] == [(200, "succeeded")] * 4


def test_bad_requests_get_clear_final_answers_and_the_server_stays_ready(whisper, whisper_door, speech_jobs):
    url = whisper_door.url
    r = httpx.post(url, content=b"{not json", headers={"Salad-Job-Id": "bad-1"}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "failed" and "not JSON" in r.json()["error"]
    r = httpx.post(url, json={"audio": "x"}, timeout=30)
    assert r.status_code == 400 and "Salad-Job-Id" in r.json()["error"]
    r = httpx.post(url, json={"audio": "x"}, headers={"Salad-Job-Id": "../predictions"}, timeout=30)
    assert r.status_code == 400 and "not a job id" in r.json()["error"]
    r = httpx.post(url, json=[1, 2], headers={"Salad-Job-Id": "bad-2"}, timeout=30)
    assert r.status_code == 200 and "JSON list" in r.json()["error"]

    def huge():  # 100 MB, streamed: the door stops reading at its limit
        chunk = b" " * (1 << 20)
        for _ in range(100):
            yield chunk

    try:
        r = httpx.post(url, content=huge(), headers={"Salad-Job-Id": "bad-3"}, timeout=60)
        assert r.status_code == 413 and "over" in r.json()["error"]
    except httpx.TransportError:
        pass  # the door answered 413 and closed while the body was still being sent
    r = httpx.post(url, json={"input": {"audio": "x", "beam": 3}}, headers={"Salad-Job-Id": "bad-4"}, timeout=30)
    assert r.json() == {"status": "failed", "error": r.json()["error"]} and "unknown input(s) beam" in r.json()["error"]
    assert ready(whisper.port)
    r = httpx.post(url, json={"input": speech_jobs[0][0]}, headers={"Salad-Job-Id": "good-after-bad"}, timeout=300)
    assert r.status_code == 200 and r.json()["status"] == "succeeded"


def test_only_loopback_callers_may_run_jobs(whisper):
    from starlette.testclient import TestClient

    door = QueueDoor(whisper.url("127.0.0.1"))
    with TestClient(door.app, client=("203.0.113.7", 4000)) as http:
        r = http.post("/queue", json={"audio": "x"}, headers={"Salad-Job-Id": "outside"})
    assert r.status_code == 403 and "loopback" in r.json()["error"]
    door.sock.close()  # never started


def test_worker_killed_mid_job_is_retried_and_succeeds_on_the_next_delivery(speech_jobs, tmp_path):
    """coglet's worker dies: the route says 503, the queue takes the job back, and the instance
    that comes up next (here: the same port, restarted) runs it."""
    inputs, text = speech_jobs[-2]
    port = free_port()
    server = CogServer("whisper", port=port, env=LOOPBACK_FETCH).start()
    try:
        server.wait_ready(timeout=180)
        service = QueueService()
        job_id = service.submit({"input": inputs})
        with QueueDoor(server.url("127.0.0.1")) as door, \
                StandInWorker(service, door.port, "queue", lambda: ready(port)):
            wait_until(lambda: not ready(port), 60, "the job to start")
            workers = subprocess.run(["pgrep", "-s", str(server.process.pid), "-f", "_run_worker"],
                                     capture_output=True, text=True, check=True).stdout.split()
            for pid in workers:
                os.kill(int(pid), signal.SIGKILL)
            job = service.jobs[job_id]
            wait_until(lambda: job.rejections == 1, 60, "the job to be rejected")
            assert job.answers == [503] and job.status == "pending"
            server.stop()  # Salad replaces the instance whose server is UNHEALTHY
            server = CogServer("whisper", port=port, env=LOOPBACK_FETCH).start()
            server.wait_ready(timeout=180)
            assert service.wait_done(timeout=300)
        assert (job.status, job.deliveries, job.answers) == ("succeeded", 2, [503, 200])
        assert_transcript(job.output["output"]["text"], text)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def openvoice(openvoice_weights):  # noqa: F811
    with CogServer("openvoice", env=server_env(openvoice_weights)) as server:
        server.wait_ready(timeout=300)
        yield server


def test_speech_outputs_go_to_storage_with_their_url_in_the_output(openvoice, aws, monkeypatch):
    bucket = "queue-outputs"
    aws.client("s3").create_bucket(Bucket=bucket)
    for name, value in aws.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SALADCOG_QUEUE_STORAGE", f"s3://{bucket}/tts/")
    service = QueueService()
    jobs = [service.submit({"input": {"text": "Hello world. The cat sat on the mat." * n, "seed": 1}})
            for n in (1, 3)]
    with QueueDoor(openvoice.url("127.0.0.1")) as door, \
            StandInWorker(service, door.port, "/queue", lambda: ready(openvoice.port)):
        assert service.wait_done(timeout=300)
    store = Storage.from_url(f"s3://{bucket}/tts/")
    for job_id in jobs:
        job = service.jobs[job_id]
        assert (job.status, job.deliveries) == ("succeeded", 1)
        assert job.output["output"]["audio"] == f"s3://{bucket}/tts/{job_id}/output-0.wav"
        assert store.get_bytes(f"{job_id}/output-0.wav", 50 << 20)[:4] == b"RIFF"

