"""`saladcog worker submit|status|collect` against moto's SQS and S3 on loopback, as a user runs them."""

from __future__ import annotations

import json

import pytest

from saladcog import cli
from saladcog.storage import Storage
from saladcog.worker.jobs import Job, result_name
from tests.worker_harness import CLIPS


@pytest.fixture
def env(aws, monkeypatch):
    aws.reset()
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    s3 = aws.client("s3")
    for bucket in ("media", "out"):
        s3.create_bucket(Bucket=bucket)
    return aws


def receive_all(sqs, url: str) -> list[dict]:
    messages = []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  VisibilityTimeout=600).get("Messages", [])
        if not got:
            break
        messages += got
    return messages


def test_a_folder_is_uploaded_then_queued_and_resubmitting_skips_what_is_done(env, tmp_path, capsys):
    folder = tmp_path / "talks"
    (folder / "day1").mkdir(parents=True)
    for clip in CLIPS[:3]:
        (folder / "day1" / clip.name).write_bytes(clip.read_bytes())
    (folder / "notes.txt").write_text("not media")
    args = ["worker", "submit", str(folder), "--queue", "talks.fifo", "--upload", "s3://media/in/",
            "--results", "s3://out/r/", "--create", "--max-receives", "3", "--input", "transcription=vtt"]
    assert cli.main(args) == 0
    assert "3 messages sent" in capsys.readouterr().out
    sqs = env.client("sqs")
    url = sqs.get_queue_url(QueueName="talks.fifo")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":talks-dlq.fifo") and int(redrive["maxReceiveCount"]) == 3
    uploads = Storage.from_url("s3://media/in/", client=env.client("s3"))
    assert sorted(uploads.names()) == sorted(f"day1/{c.name}" for c in CLIPS[:3])
    jobs = [Job.parse(m["Body"]) for m in receive_all(sqs, url)]
    assert sorted(j.source for j in jobs) == sorted(f"s3://media/in/day1/{c.name}" for c in CLIPS[:3])
    assert {j.result for j in jobs} == {result_name(f"s3://media/in/day1/{c.name}") for c in CLIPS[:3]}
    assert all(j.result.startswith(f"media/in/day1/{c.name}~") for j, c in zip(sorted(jobs, key=lambda j: j.source),
                                                                               sorted(CLIPS[:3], key=lambda c: c.name)))
    assert all(j.inputs == {"transcription": "vtt"} and j.subtitles.endswith(".vtt") for j in jobs)

    # A worker stored one result (and its subtitles); the queue was emptied; submit again.
    results = Storage.from_url("s3://out/r/", client=env.client("s3"))
    results.put_json(jobs[0].result, {"status": "succeeded", "output": {"text": "hi"}})
    results.put_bytes(jobs[0].subtitles, b"WEBVTT\n")
    sqs.purge_queue(QueueUrl=url)
    assert cli.main(args) == 0
    assert "2 messages sent to" in (out := capsys.readouterr().out) and "1 skipped" in out
    assert sorted(Job.parse(m["Body"]).result for m in receive_all(sqs, url)) == sorted(
        j.result for j in jobs[1:])

    assert cli.main(["worker", "status", "--queue", "talks.fifo", "--results", "s3://out/r/"]) == 0
    line = capsys.readouterr().out
    assert "1/3 stored, 0 waiting, 2 in flight, 0 dead-lettered" in line  # received just above

    results.put_bytes(jobs[1].subtitles, b"WEBVTT\n")  # a crash between the subtitles and the JSON
    out = tmp_path / "collected"
    assert cli.main(["worker", "collect", str(out), "--results", "s3://out/r/"]) == 0
    assert json.loads((out / jobs[0].result).read_text())["output"]["text"] == "hi"
    assert (out / jobs[0].subtitles).read_text() == "WEBVTT\n"
    assert not (out / jobs[1].subtitles).exists()
    assert cli.main(["worker", "collect", str(out), "--results", "s3://out/r/"]) == 0
    assert "0 result files written" in capsys.readouterr().out.splitlines()[-1]


def test_an_s3_prefix_and_a_url_list(env, tmp_path, capsys):
    s3 = env.client("s3")
    for clip in CLIPS[:2]:
        s3.put_object(Bucket="media", Key=f"batch/{clip.name}", Body=b"x")
    s3.put_object(Bucket="media", Key="batch/readme.md", Body=b"x")
    assert cli.main(["worker", "submit", "s3://media/batch/", "--queue", "plain", "--results", "s3://out/r/",
                     "--create"]) == 0
    listing = tmp_path / "urls.txt"
    listing.write_text("# talks\nhttps://example.com/a.mp3\n\nhttps://example.com/a.mp3\nhttps://example.com/b.mp3?x=1\n")
    assert cli.main(["worker", "submit", str(listing), "--queue", "plain", "--results", "s3://out/r/"]) == 0
    sqs = env.client("sqs")
    url = sqs.get_queue_url(QueueName="plain")["QueueUrl"]
    sources = sorted(Job.parse(m["Body"]).source for m in receive_all(sqs, url))
    assert sources == sorted([f"s3://media/batch/{c.name}" for c in CLIPS[:2]]
                             + ["https://example.com/a.mp3", "https://example.com/b.mp3?x=1"])


def test_refusals_are_one_clear_line(env, tmp_path, capsys):
    listing = tmp_path / "urls.txt"
    listing.write_text("/etc/passwd\n")
    assert cli.main(["worker", "submit", str(listing), "--queue", "q", "--results", "s3://out/r/", "--create"]) == 1
    assert "not http(s) or s3:// URLs: /etc/passwd" in capsys.readouterr().err
    assert cli.main(["worker", "submit", str(tmp_path), "--queue", "q", "--results", "s3://out/r/"]) == 1
    assert "--upload" in capsys.readouterr().err
    assert cli.main(["worker", "status", "--queue", "nope", "--results", "s3://out/r/"]) == 1
    assert "saladcog worker:" in capsys.readouterr().err
