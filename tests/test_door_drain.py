"""The front door's drain on SIGTERM (`python -m saladcog.door`, a real process, in front of the
real Cog server running a slow echo runner): readiness fails at once, new predictions get 503
with Retry-After, what runs is finished and delivered (sync answer, Cog's own `completed`
webhook), and an async prediction still running at the grace deadline gets a terminal `failed`
webhook from the door (with WEBHOOK_AUTH_TOKEN, as Cog sends it); then the door exits 0."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from door_harness import DoorProcess
from entrypoint_harness import ECHO
from saladcog import probe
from saladcog.serve import CogServer
from saladcog.webhooks import Receiver

ECHO_RUNNER = f"{ECHO / 'predict.py'}:Predictor"


@pytest.fixture(scope="module")
def echo():
    with CogServer(ECHO_RUNNER) as server:
        server.wait_ready(timeout=60)
        yield server


@pytest.fixture
def door_env():
    doors = []

    def start(echo: CogServer, **env: str) -> DoorProcess:
        door = DoorProcess(echo.url("127.0.0.1"), env)
        doors.append(door)
        return door

    yield start
    for door in doors:
        door.stop()


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def refuses_new_predictions(door: DoorProcess) -> None:
    for response in (httpx.post(f"{door.url}/predictions", json={"input": {"text": "late"}}),
                     httpx.put(f"{door.url}/predictions/late", json={"id": "late", "input": {"text": "late"}}),
                     httpx.post(f"{door.url}/v1/audio/speech", json={"model": "tts-1", "input": "late"}),
                     httpx.post(f"{door.url}/v1/audio/transcriptions", files={"file": ("late.wav", b"x")})):
        assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text


def test_sync_prediction_in_flight_is_answered(echo, door_env):
    door = door_env(echo, COG_SHUTDOWN_TIMEOUT="30")
    answers = []
    caller = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{door.url}/predictions", json={"input": {"text": "finish me", "seconds": 2}}, timeout=60)))
    caller.start()
    assert wait_for(lambda: echo.health() == "BUSY")
    door.process.send_signal(signal.SIGTERM)
    assert wait_for(lambda: door.health() == "DRAINING", timeout=5)
    assert probe.main(["--host", "::1", "--port", str(door.port)]) != 0  # the readiness probe fails
    refuses_new_predictions(door)
    caller.join(30)
    assert answers and answers[0].status_code == 200
    assert answers[0].json()["status"] == "succeeded" and answers[0].json()["output"] == "finish me"
    assert door.process.wait(timeout=15) == 0


def test_async_prediction_finishing_within_the_grace_period_is_delivered(echo, door_env, tmp_path):
    door = door_env(echo, COG_SHUTDOWN_TIMEOUT="30")
    with Receiver(tmp_path / "hooks.sqlite") as receiver:
        accepted = httpx.put(f"{door.url}/predictions/in-time", headers={"Prefer": "respond-async"}, json={
            "id": "in-time", "input": {"text": "in time", "seconds": 2}, "webhook": receiver.url,
            "webhook_events_filter": ["completed"]})
        assert accepted.status_code == 202
        assert wait_for(lambda: echo.health() == "BUSY")
        door.process.send_signal(signal.SIGTERM)
        assert wait_for(lambda: door.health() == "DRAINING", timeout=5)
        refuses_new_predictions(door)
        completed = receiver.store.wait_completed("in-time", timeout=30)
        assert door.process.wait(timeout=15) == 0
    assert completed["status"] == "succeeded" and completed["output"] == "in time"


def test_async_prediction_running_at_the_deadline_gets_a_failed_webhook(echo, door_env, tmp_path):
    """Last in this module: the echo runner sleeps on after the door has gone."""
    door = door_env(echo, COG_SHUTDOWN_TIMEOUT="4", WEBHOOK_AUTH_TOKEN="hook-secret")
    with Receiver(tmp_path / "hooks.sqlite", token="hook-secret") as receiver:
        accepted = httpx.put(f"{door.url}/predictions/too-long", headers={"Prefer": "respond-async"}, json={
            "id": "too-long", "input": {"text": "too long", "seconds": 20}, "webhook": receiver.url})
        assert accepted.status_code == 202
        assert wait_for(lambda: echo.health() == "BUSY")
        signalled = time.monotonic()
        door.process.send_signal(signal.SIGTERM)
        completed = receiver.store.wait_completed("too-long", timeout=15)
        assert door.process.wait(timeout=10) == 0
        exited_after = time.monotonic() - signalled
    assert completed["status"] == "failed" and completed["id"] == "too-long"
    assert "instance stopped" in completed["error"] and "send the prediction again" in completed["error"]
    assert completed["input"] == {"text": "too long", "seconds": 20}
    assert exited_after < 4.0  # within COG_SHUTDOWN_TIMEOUT, before the supervisor would kill
