"""saladcog.client and the webhook receiver against the real Cog server (Whisper, tiny.en) over [::1]."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jiwer
import pytest

from client_harness import TOKEN, clips, long_recording
from conftest import normalize
from saladcog.client import Client, ClientError, PredictionError
from saladcog.serve import CogServer
from saladcog.webhooks import Receiver

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    with CogServer("whisper", front_door="relay", env={"WEBHOOK_AUTH_TOKEN": TOKEN}) as server:
        server.wait_ready(timeout=180)
        yield server


@pytest.fixture
def receiver(tmp_path):
    with Receiver(tmp_path / "hooks.sqlite", host="::1", token=TOKEN) as rx:
        yield rx


@pytest.fixture
def client(server):
    with Client(server.url("[::1]")) as client:
        yield client


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    return long_recording(tmp_path_factory.mktemp("long") / "long.wav", repeats=2)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_sync_predict_sends_local_file_and_keeps_the_id(client):
    clip = clips()[0]
    prediction = client.predict({"audio": clip, "language": "en"}, prediction_id="sync-local-file")
    assert prediction.id == "sync-local-file"
    assert prediction.status == "succeeded"
    reference = clip.with_suffix(".txt").read_text().strip()
    assert jiwer.wer(reference, normalize(prediction.output["text"])) < 0.15


def test_bad_inputs_fail_clearly_and_the_server_stays_ready(client, server, tmp_path):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    with pytest.raises(PredictionError, match="not an audio or video file"):
        client.predict({"audio": not_audio})
    with pytest.raises(ClientError, match="invalid input: beam_size"):
        client.predict({"audio": clips()[1], "beam_size": 99})
    with pytest.raises(ClientError, match="does not exist"):
        client.predict({"audio": tmp_path / "missing.wav"})
    server.wait_ready(timeout=5)  # coglet frees the slot just after it answers
    assert client.predict({"audio": clips()[1]}).status == "succeeded"


def test_async_prediction_delivers_start_output_completed_once_each(client, receiver):
    prediction = client.predict_async(
        {"audio": clips()[2]}, webhook=receiver.url, store=receiver.store, timeout=60
    )
    events = receiver.store.events(prediction.id)
    # coglet sends the output and completed webhooks without waiting for each other, so on a
    # busy machine they may arrive in either order: the store goes by the event, not the order.
    assert events[0].event == "start"
    assert sorted(e.event for e in events) == ["completed", "output", "start"]
    assert {e.prediction_id for e in events} == {prediction.id}
    assert {e.body["id"] for e in events} == {prediction.id}
    completed = receiver.store.completed(prediction.id)
    assert completed["status"] == "succeeded"
    assert prediction.output["text"] == completed["output"]["text"]
    assert "dashwood" not in normalize(prediction.output["text"])  # clip 0890: "unless to be rather…"
    assert "selfish" in normalize(prediction.output["text"])


def test_completed_webhook_refused_with_503_is_retried_and_stored_once(client, receiver, tmp_path):
    # Hold the receiver's sqlite file locked, as a stalled disk or a backup would: the receiver
    # cannot store the event, so it must answer 503 rather than acknowledge it.
    lock = sqlite3.connect(receiver.store.path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        prediction_id = client.submit(
            {"audio": clips()[3]}, webhook=receiver.url, events=("completed",), prediction_id="refused-once"
        )
        wait_for(lambda: receiver.app.rejected >= 1, 30, "the receiver to answer 503")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    state = receiver.store.wait_completed(prediction_id, timeout=60)
    assert state["status"] == "succeeded"
    time.sleep(1.0)  # room for a duplicate delivery, if Cog were to send one
    events = receiver.store.events(prediction_id)
    assert [e.event for e in events] == ["completed"]
    assert receiver.app.rejected >= 1


def test_receiver_rejects_a_wrong_token_and_dedups(receiver):
    body = {"id": "token-check", "status": "succeeded", "output": {"text": "hi"}}
    wrong = httpx.post(receiver.url, json=body, headers={"Authorization": "Bearer nope"})
    missing = httpx.post(receiver.url, json=body)
    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert receiver.store.events("token-check") == []
    right = {"Authorization": f"Bearer {TOKEN}"}
    first = httpx.post(receiver.url, json=body, headers=right)
    again = httpx.post(receiver.url, json={**body, "output": {"text": "re-run"}}, headers=right)
    assert (first.json(), again.json()) == ({"stored": True}, {"stored": False})
    assert [e.body["output"]["text"] for e in receiver.store.events("token-check")] == ["hi"]
    assert httpx.post(receiver.url, content=b"{oops", headers=right).status_code == 400


def test_put_is_idempotent_while_running_and_cancel_ends_it_canceled(client, server, receiver, long_wav):
    prediction_id = client.submit({"audio": long_wav}, webhook=receiver.url, prediction_id="long-cancel")
    wait_for(lambda: receiver.store.events(prediction_id), 30, "the start webhook")
    # The same PUT again while it runs: coglet answers 202 with its state and starts nothing.
    again = httpx.put(
        f"{server.url('[::1]')}/predictions/{prediction_id}",
        json={"id": prediction_id, "input": {"audio": "https://unused.invalid/x.wav"}},
        headers={"Prefer": "respond-async"},
    )
    assert again.status_code == 202 and again.json()["id"] == prediction_id
    assert client.cancel(prediction_id) is True
    state = receiver.store.wait_completed(prediction_id, timeout=30)
    assert state["status"] == "canceled"
    starts = server.log_path.read_text().count(f'"Starting prediction","prediction_id":"{prediction_id}"')
    assert starts == 1
    assert client.cancel("no-such-prediction") is False
    wait_for(lambda: server.health() == "READY", 30, "READY after the cancel")
    assert client.predict({"audio": clips()[4]}).status == "succeeded"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "WEBHOOK_AUTH_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "saladcog.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def test_cli_predict_like_cog_predict(server, tmp_path):
    out = tmp_path / "out.json"
    done = cli("predict", "--url", server.url("[::1]"), "-i", f"audio=@{clips()[0]}",
               "-i", "beam_size=2", "-i", "word_timestamps=true", "-o", str(out))
    assert done.returncode == 0, done.stderr
    output = json.loads(out.read_text())
    assert "dashwood" in normalize(output["text"])
    assert "words" in output["segments"][0]  # word_timestamps=true arrived typed as a boolean
    bad = cli("predict", "--url", server.url("[::1]"), "-i", f"audio=@{clips()[0]}", "-i", "beam_size=lots")
    assert bad.returncode == 2 and "beam_size='lots': not a valid integer" in bad.stderr
    unknown = cli("predict", "--url", server.url("[::1]"), "-i", "voice=x")
    assert unknown.returncode == 2 and "no input 'voice'" in unknown.stderr


def test_cli_goes_async_by_itself_for_long_audio(server, long_wav, tmp_path):
    # At 2 s of processing per audio second, 70 s of audio would take ~140 s: over the gateway's
    # 100 s, so the CLI sends it async and waits for the webhook on its own receiver.
    out = tmp_path / "long.json"
    done = cli("predict", "--url", server.url("[::1]"), "--rtf", "2", "-i", f"audio=@{long_wav}", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "async:" in done.stderr
    assert normalize(json.loads(out.read_text())["text"]).count("dashwood") == 2
