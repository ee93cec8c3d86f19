"""Where a queue job's output goes: inline when it fits the queue's 10 MB limit, else (and every
file, when storage is configured) to S3 on loopback (moto), or to a presigned PUT URL; with
nowhere to put it, the job fails with a message that says so."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from saladcog.queue.job import MAX_OUTPUT_BYTES, Job, OutputRefused, Outputs
from saladcog.storage import Storage

WAV_BYTES = 8_000_000  # as a data URI (base64) over 10 MB


@pytest.fixture
def store(aws, monkeypatch):
    for name, value in aws.env.items():
        monkeypatch.setenv(name, value)
    aws.reset()
    aws.client("s3").create_bucket(Bucket="outputs")
    return Storage.from_url("s3://outputs/jobs/")


def speech_result(size: int) -> dict:
    audio = b"RIFF" + bytes(size - 4)
    return {"id": "j1", "status": "succeeded", "metrics": {"predict_time": 1.0},
            "output": {"audio": "data:audio/wav;base64," + base64.b64encode(audio).decode(), "metrics": {"pieces": 3}}}


def transcript_result(size: int) -> dict:
    words = [{"word": " word", "start": i * 0.1, "end": i * 0.1 + 0.1} for i in range(size // 50)]
    return {"id": "j2", "status": "succeeded", "output": {"text": "word " * (size // 50), "words": words}}


def test_a_file_over_the_limit_goes_to_storage_and_the_output_holds_its_url(store):
    answer = asyncio.run(Outputs(store).place(Job("j1", {}), speech_result(WAV_BYTES)))
    assert answer.status == 200
    assert answer.body["output"] == {"audio": "s3://outputs/jobs/j1/output-0.wav", "metrics": {"pieces": 3}}
    assert len(answer.content()) < 1000
    assert store.size("j1/output-0.wav") == WAV_BYTES


def test_a_json_output_over_the_limit_goes_to_storage_whole(store):
    result = transcript_result(12_000_000)
    answer = asyncio.run(Outputs(store).place(Job("j2", {}), result))
    assert answer.status == 200 and answer.body["output_url"] == "s3://outputs/jobs/j2/output.json"
    assert answer.body["output_bytes"] > MAX_OUTPUT_BYTES and "output" not in answer.body
    assert store.get_json("j2/output.json") == result["output"]


def test_a_small_output_stays_inline_without_storage():
    result = speech_result(1000)
    answer = asyncio.run(Outputs(None).place(Job("j3", {}), result))
    assert answer.status == 200 and answer.body == result


def test_too_big_without_storage_fails_clearly_never_truncated():
    answer = asyncio.run(Outputs(None).place(Job("j4", {}), speech_result(WAV_BYTES)))
    assert answer.status == 200 and answer.body["status"] == "failed"
    assert "over the job queue's 10,000,000-byte limit" in answer.body["error"]
    assert "SALADCOG_QUEUE_STORAGE" in answer.body["error"]
    json.loads(answer.content())


def test_a_presigned_put_url_in_the_job_receives_the_file(store, monkeypatch):
    monkeypatch.setenv("SALADCOG_FETCH_ALLOW_NETWORKS", "127.0.0.0/8")  # moto's loopback address
    put_url = store.presigned_put("by-url/speech.wav")
    answer = asyncio.run(Outputs(None).place(Job("j5", {}, put_url), speech_result(WAV_BYTES)))
    assert answer.status == 200
    assert answer.body["output"]["audio"] == put_url.split("?")[0]
    assert store.get_bytes("by-url/speech.wav", 20 << 20)[:4] == b"RIFF"


def test_a_put_url_to_a_private_address_is_refused_before_connecting(store):
    """The job names the URL: loopback (here moto's, really listening) is refused by default, as
    for a runner's URL inputs, and the job fails with a message that says so."""
    put_url = store.presigned_put("by-url/refused.wav")
    with pytest.raises(OutputRefused, match="output_put_url's address is not allowed"):
        asyncio.run(Outputs(None).place(Job("j6", {}, put_url), speech_result(1000)))
    assert not store.exists("by-url/refused.wav")
