"""The batch node end to end: moto's SQS and S3 on loopback, two real Cog servers (tiny.en), two
workers as `python -m saladcog.worker`, inputs from a loopback HTTP server; crashes by SIGKILL."""

from __future__ import annotations

import json
import os
import signal

import pytest

from saladcog import cli
from saladcog.serve import CogServer
from saladcog.storage import Storage
from saladcog.worker.jobs import result_name
from tests.entrypoint_harness import session_processes
from tests.worker_harness import (
    InputServer, WorkerProcess, good_url, leftover_files, queue_counts, stored_lines, wait_for, worker_env,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two Cog servers, each with its own spool directory (shared with its worker)."""
    spools = [tmp_path_factory.mktemp(f"spool{i}") for i in range(2)]
    with CogServer("whisper", env={"SALADCOG_UPLOAD_DIR": str(spools[0])}) as first, \
            CogServer("whisper", env={"SALADCOG_UPLOAD_DIR": str(spools[1])}) as second:
        first.wait_ready(timeout=300)
        second.wait_ready(timeout=300)
        yield [(first, spools[0]), (second, spools[1])]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    with InputServer(tmp_path_factory.mktemp("inputs")) as server:
        yield server


def submit(monkeypatch, aws, tmp_path, queue: str, urls: list[str], results: str, *extra: str) -> str:
    """`saladcog worker submit` as a user runs it; returns the queue URL."""
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    listing = tmp_path / f"{queue}.txt"
    listing.write_text("\n".join(urls) + "\n")
    assert cli.main(["worker", "submit", str(listing), "--queue", queue, "--results", results, "--create",
                     "--max-receives", "4", "--visibility", "6", *extra]) == 0
    return aws.client("sqs").get_queue_url(QueueName=queue)["QueueUrl"]


def records(aws, results: str) -> dict[str, dict]:
    store = Storage.from_url(results, client=aws.client("s3"))
    return {name: store.get_json(name) for name in store.names() if name.endswith(".json")}


def sigterm_mid_prediction(worker: WorkerProcess) -> None:
    """SIGTERM once a prediction has started; the worker must exit 0 within a minute."""
    try:
        wait_for(lambda: "predicting" in worker.log(), 120, "a prediction started")
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.log()
    finally:
        worker.stop()
    assert "Traceback" not in worker.log()


def test_sigterm_finishes_the_running_prediction_and_returns_the_rest(servers, inputs, aws, tmp_path, monkeypatch):
    aws.client("s3").create_bucket(Bucket="sigterm")
    urls = [f"{inputs.url}/long/{n}.wav" for n in range(4)]
    url = submit(monkeypatch, aws, tmp_path, "sigterm", urls, "s3://sigterm/results/")
    (server, spool) = servers[0]
    worker = WorkerProcess(worker_env(aws, server, spool, url, "s3://sigterm/results/"), tmp_path / "w.log")
    sigterm_mid_prediction(worker)
    sqs = aws.client("sqs")
    # Nothing held: every message not done is visible again at once, not after its timeout.
    visible, in_flight = queue_counts(sqs, url)
    done = records(aws, "s3://sigterm/results/")
    assert in_flight == 0, worker.log()
    assert len(done) == 1 and next(iter(done.values()))["status"] == "succeeded", worker.log()
    assert visible == 3
    assert leftover_files(spool) == []


def test_sigterm_past_the_grace_cancels_the_prediction_and_returns_its_message(servers, inputs, aws, tmp_path,
                                                                               monkeypatch):
    aws.client("s3").create_bucket(Bucket="grace")
    url = submit(monkeypatch, aws, tmp_path, "grace", [f"{inputs.url}/long/g{n}.wav" for n in range(2)],
                 "s3://grace/r/")
    (server, spool) = servers[0]
    worker = WorkerProcess(worker_env(aws, server, spool, url, "s3://grace/r/", SALADCOG_STOP_GRACE="0"),
                           tmp_path / "w.log")
    sigterm_mid_prediction(worker)
    assert "canceling prediction" in worker.log()
    assert records(aws, "s3://grace/r/") == {}  # no partial result
    assert queue_counts(aws.client("sqs"), url) == (2, 0)
    wait_for(lambda: server.health() == "READY", 30, "the server idle again")
    assert leftover_files(spool) == []


def test_a_node_below_the_speed_floor_exits_after_storing_its_result(servers, inputs, aws, tmp_path, monkeypatch):
    aws.client("s3").create_bucket(Bucket="slow")
    url = submit(monkeypatch, aws, tmp_path, "slow", [good_url(inputs.url, n) for n in range(3)], "s3://slow/r/")
    (server, spool) = servers[0]
    env = worker_env(aws, server, spool, url, "s3://slow/r/", SALADCOG_MIN_SPEED="100000", SALADCOG_SPEED_WINDOW="1")
    worker = WorkerProcess(env, tmp_path / "w.log")
    try:
        assert worker.wait(120) == 4, worker.log()
    finally:
        worker.stop()
    assert "below SALADCOG_MIN_SPEED=100000" in worker.log()
    assert [r["status"] for r in records(aws, "s3://slow/r/").values()] == ["succeeded"]
    assert queue_counts(aws.client("sqs"), url) == (2, 0)


def test_sixty_jobs_two_workers_crashes_exactly_one_result_each(servers, inputs, aws, tmp_path, monkeypatch):
    """Kill -9 one worker mid-job (it restarts, as its container would) and the other server's
    Cog worker mid-prediction: every input ends with one result or one failed record, or (the
    stalling one) in the dead-letter queue; none is stored twice; no temporary file is left."""
    aws.client("s3").create_bucket(Bucket="batch")
    results = "s3://batch/results/"
    good = [good_url(inputs.url, n) for n in range(49)] + [f"{inputs.url}/long/{n}.wav" for n in range(3)]
    bad = [f"{inputs.url}/bad/{n}.wav" for n in range(5)]
    missing = [f"{inputs.url}/missing/{n}.wav" for n in range(2)]
    stalled = [f"{inputs.url}/stall/0.wav"]
    urls = good + bad + missing + stalled
    # Long ones early, so that the crashes find predictions running; the rest interleaved.
    order = urls[49:52] + [u for pair in zip(urls[:49], (bad + missing + stalled) * 7) for u in pair][:57]
    order = list(dict.fromkeys(order + urls))
    assert len(order) == 60
    url = submit(monkeypatch, aws, tmp_path, "batch", order, results, "--input", "transcription=srt")
    (server1, spool1), (server2, spool2) = servers
    w1 = WorkerProcess(worker_env(aws, server1, spool1, url, results), tmp_path / "w1.log")
    w2 = WorkerProcess(worker_env(aws, server2, spool2, url, results), tmp_path / "w2.log")
    restarted = None
    try:
        # Worker 1 dies mid-prediction and comes back.
        wait_for(lambda: w1.log().count("predicting") >= 2 and server1.health() == "BUSY", 120, "worker 1 busy")
        w1.stop()
        restarted = WorkerProcess(worker_env(aws, server1, spool1, url, results), tmp_path / "w1b.log")
        # Server 2's Cog worker (coglet's child) dies mid-prediction: server 2 is done for.
        wait_for(lambda: server2.health() == "BUSY", 120, "server 2 busy", step=0.05)
        cog_workers = [pid for pid in session_processes(server2.process.pid) if pid != server2.process.pid]
        assert cog_workers
        for pid in cog_workers:
            os.kill(pid, signal.SIGKILL)
        assert w2.wait(60) == 3, w2.log()
        assert "the server is" in w2.log()

        def settled():
            done = records(aws, results)
            return len(done) == 59 and queue_counts(aws.client("sqs"), url) == (0, 0)

        wait_for(settled, 300, "59 results and an empty queue", step=1.0)
        restarted.signal(signal.SIGTERM)
        assert restarted.wait(60) == 0, restarted.log()
    finally:
        for worker in (w1, w2, restarted):
            if worker:
                worker.stop()
    done = records(aws, results)
    assert set(done) == {result_name(u) for u in good + bad + missing}
    for u in good:
        record = done[result_name(u)]
        assert record["status"] == "succeeded", record
        assert record["output"]["text"].strip()
    for u in bad:
        assert done[result_name(u)]["status"] == "failed"
        assert "decode" in done[result_name(u)]["error"] or "audio" in done[result_name(u)]["error"]
    for u in missing:
        assert done[result_name(u)]["error"].endswith("HTTP 404 Not Found"), done[result_name(u)]
    subtitles = Storage.from_url(results, client=aws.client("s3"))
    assert subtitles.get_bytes(result_name(good[0])[:-5] + ".srt", 1 << 20).startswith(b"1\n")
    # The stalling input went to the dead-letter queue after its receives.
    sqs = aws.client("sqs")
    dlq = sqs.get_queue_url(QueueName="batch-dlq")["QueueUrl"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"])["input"] for m in dead] == stalled
    for worker in (w1, w2, restarted):
        assert "Traceback" not in worker.log(), worker.log()
    # None stored twice, across all three worker processes.
    stored = [name for w in (w1, w2, restarted) for name in stored_lines(w.log())]
    assert sorted(stored) == sorted(done), (len(stored), len(done))
    for spool in (spool1, spool2):
        assert leftover_files(spool) == [], leftover_files(spool)
