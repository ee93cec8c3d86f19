"""The queue route's answers to a runner's faults and to file outputs over the queue's 10 MB
limit, on the real Cog server (tests/queue_fault_runner.py), through the stand-in worker."""

from __future__ import annotations

import pytest

from saladcog.serve import CogServer
from saladcog.storage import Storage
from tests.queue_door import QueueDoor
from tests.queue_standin import QueueService, StandInWorker
from tests.test_queue_route import ready

RUNNER = "tests/queue_fault_runner.py:Faults"


@pytest.fixture(scope="module")
def faults():
    with CogServer(RUNNER) as server:
        server.wait_ready(timeout=120)
        yield server


def run_jobs(server, *inputs) -> list:
    service = QueueService()
    ids = [service.submit({"input": value}) for value in inputs]
    with QueueDoor(server.url("127.0.0.1")) as door, \
            StandInWorker(service, door.port, "/queue", lambda: ready(server.port)):
        assert service.wait_done(timeout=120)
    return [service.jobs[i] for i in ids]


def test_out_of_memory_is_the_instances_fault_and_retried_a_bad_input_is_final(faults):
    oom, bad = run_jobs(faults, {"fault": "out of memory"}, {"fault": "bad input"})
    # Retried 3 times after the first delivery, then the queue gives up (here: same instance).
    assert (oom.status, oom.deliveries, oom.answers) == ("failed", 4, [503] * 4)
    assert (bad.status, bad.deliveries) == ("succeeded", 1)
    assert bad.output == {"status": "failed", "error": "the text has no readable words"}
    assert ready(faults.port)


def test_a_file_output_over_10_mb_goes_to_storage_and_its_url_is_the_output(faults, aws, monkeypatch):
    aws.client("s3").create_bucket(Bucket="fault-outputs")
    for name, value in {**aws.env, "SALADCOG_QUEUE_STORAGE": "s3://fault-outputs/jobs/"}.items():
        monkeypatch.setenv(name, value)
    (job,) = run_jobs(faults, {"file_mb": 12})
    assert (job.status, job.deliveries) == ("succeeded", 1)
    assert job.output["output"] == f"s3://fault-outputs/jobs/{job.id}/output-0.wav"
    stored = Storage.from_url("s3://fault-outputs/jobs/")
    assert stored.size(f"{job.id}/output-0.wav") == 12_000_004


def test_without_storage_a_file_output_over_10_mb_fails_the_job_clearly(faults, monkeypatch):
    monkeypatch.delenv("SALADCOG_QUEUE_STORAGE", raising=False)
    small, big = run_jobs(faults, {"file_mb": 1}, {"file_mb": 12})
    assert small.output["status"] == "succeeded" and small.output["output"].startswith("data:audio/")
    assert (big.status, big.deliveries, big.output["status"]) == ("succeeded", 1, "failed")
    assert "over the job queue's 10,000,000-byte limit" in big.output["error"]
