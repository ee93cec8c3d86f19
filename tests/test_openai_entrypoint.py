"""ipv6_entrypoint.sh in openai mode keeps the relay mode's lifecycle (the front door and the Cog
server live and die together, SIGTERM stops both), answers 503 while the model loads, and passes
Cog's own server-sent events through as they come."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import httpx

from client_harness import long_recording
from entrypoint_harness import ECHO, children, cmdline, session_left
from saladcog.client import Client
from saladcog.serve import CogServer

ECHO_RUNNER = f"{ECHO / 'predict.py'}:Predictor"


def front_door_pid(server: CogServer) -> int:
    for pid in children(server.process.pid):
        if "saladcog.door" in cmdline(pid):
            return pid
    raise AssertionError(f"no front door under {server.process.pid}:\n{server.log_tail()}")


def test_front_door_death_ends_the_container_nonzero():
    with CogServer(ECHO_RUNNER, front_door="openai") as server:
        server.wait_ready(timeout=60)
        os.kill(front_door_pid(server), signal.SIGKILL)
        started = time.monotonic()
        assert server.process.wait(timeout=10) != 0
        assert time.monotonic() - started < 2.0
        assert server.health() == ""


def test_sigterm_stops_server_and_front_door():
    with CogServer(ECHO_RUNNER, front_door="openai") as server:
        server.wait_ready(timeout=60)
        assert "OpenAI audio API front door on" in server.log_tail(200)
        os.kill(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=15)
        assert session_left(server.process.pid) == []


def test_not_ready_is_503_with_retry_after():
    """While the model loads, the /v1 routes answer OpenAI's 503 (the SDKs retry it)."""
    with CogServer(ECHO_RUNNER, front_door="openai", env={"ECHO_SETUP_SECONDS": "30"}) as server:
        deadline = time.monotonic() + 30
        while server.health() != "STARTING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.health() == "STARTING"
        response = httpx.post(f"{server.url()}/v1/audio/speech",
                              json={"model": "tts-1", "voice": "alloy", "input": "Hello."})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "model_not_ready"
        assert error["message"].startswith("the model is not ready")


def test_cog_event_stream_passes_through_as_it_comes(tmp_path):
    """WhisperStream's segments (Cog's SSE) reach the caller through the front door while the
    prediction still runs, not all at its end."""
    recording = long_recording(tmp_path / "long.wav", repeats=3)
    with CogServer("whisper-stream", front_door="openai") as server, Client(server.url("[::1]")) as client:
        server.wait_ready(timeout=180)
        sent_at = time.monotonic()
        arrivals = [(time.monotonic(), event.event) for event in client.stream({"audio": recording, "beam_size": 1})]
    outputs = [t for t, name in arrivals if name == "output"]
    assert arrivals[-1][1] == "completed" and len(outputs) >= 3
    assert outputs[0] - sent_at < 0.6 * (arrivals[-1][0] - sent_at)


def test_drain_through_the_entrypoint_ends_an_async_prediction_with_a_failed_webhook(tmp_path):
    """SIGTERM to the container in openai mode: the door drains, and a prediction still running
    when COG_SHUTDOWN_TIMEOUT ends reaches its caller as `failed`; then all of it stops."""
    from saladcog.webhooks import Receiver

    with CogServer(ECHO_RUNNER, front_door="openai", env={"COG_SHUTDOWN_TIMEOUT": "4"}) as server, \
            Receiver(tmp_path / "hooks.sqlite") as receiver:
        server.wait_ready(timeout=60)
        accepted = httpx.put(f"{server.url()}/predictions/cut-short", headers={"Prefer": "respond-async"}, json={
            "id": "cut-short", "input": {"text": "too long", "seconds": 30}, "webhook": receiver.url})
        assert accepted.status_code == 202
        deadline = time.monotonic() + 10
        while server.health() != "BUSY" and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(server.process.pid, signal.SIGTERM)
        completed = receiver.store.wait_completed("cut-short", timeout=15)
        server.process.wait(timeout=15)
        assert session_left(server.process.pid) == []
    assert completed["status"] == "failed" and "instance stopped" in completed["error"]


STANDIN_QUEUE_WORKER = """#!{python}
# SaladCloud's job-queue worker, as far as this test needs it: once the readiness probe passes,
# POST one job to the door's queue route as the real binary does, keep the answer, stay running.
import json, os, subprocess, sys, time, urllib.request
port = os.environ["PORT"]
deadline = time.monotonic() + 60
while subprocess.run([sys.executable, {probe!r}, "--port", port]).returncode != 0:
    if time.monotonic() > deadline:
        sys.exit("never ready")
    time.sleep(0.2)
request = urllib.request.Request(f"http://localhost:{{port}}/queue", data=json.dumps({{"text": "from the queue"}}).encode(),
                                 headers={{"Content-Type": "application/json", "Salad-Job-Id": "job-1"}})
with urllib.request.urlopen(request, timeout=60) as answer:
    open({out!r}, "w").write(json.dumps({{"status": answer.status, "body": json.loads(answer.read())}}))
while True:
    time.sleep(1)
"""


def test_the_job_queue_worker_runs_beside_the_server_and_its_jobs_reach_the_runner(tmp_path):
    """SALADCOG_JOB_QUEUE=1 in openai mode: the supervisor starts the worker binary (here a stand-in
    on the path SALADCOG_JOB_QUEUE_WORKER names), its job goes through the door's /queue to the
    runner, and SIGTERM stops all of it."""
    from saladcog import probe

    out = tmp_path / "answer.json"
    worker = tmp_path / "salad-http-job-queue-worker"
    worker.write_text(STANDIN_QUEUE_WORKER.format(python=sys.executable, probe=probe.__file__, out=str(out)))
    worker.chmod(0o755)
    env = {"SALADCOG_JOB_QUEUE": "1", "SALADCOG_JOB_QUEUE_WORKER": str(worker), "SALADCOG_OPENAI_API_KEY": "sk-x"}
    with CogServer(ECHO_RUNNER, front_door="openai", env=env) as server:
        server.wait_ready(timeout=60)
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        answer = json.loads(out.read_text())
        os.kill(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=15)
        assert session_left(server.process.pid) == []
    assert answer["status"] == 200 and answer["body"]["status"] == "succeeded", answer
    assert answer["body"]["output"] == "from the queue"
