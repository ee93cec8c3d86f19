"""The job-queue route's cost and throughput on this machine, in one run (not bench/queue.py: that
name would shadow the standard library's `queue` for scripts in bench/).

    .venv/bin/python bench/queue_route.py [--rounds 5] [--clip-seconds 60]

1. Cost per job: the same --clip-seconds clip (LibriVox speech, served over HTTP on loopback)
   transcribed by the real Cog server (tiny.en) directly (`PUT /predictions/{id}`) and through the
   queue route (`POST /queue` with a Salad-Job-Id, as the worker binary sends it) served by a
   process of its own (bench/queue_door_app.py under uvicorn, as in an image), alternating,
   --rounds times each; the ratio of the medians (goal <= 1.02).
2. 30 mixed jobs through the stand-in queue service and worker (tests/queue_standin.py): 24 speech
   jobs of 3 s to 200 s, 2 non-audio inputs, 1 empty input on the Whisper instance, and 3 speech
   synthesis jobs on an OpenVoice instance (tiny weights) whose file outputs go to S3 on loopback
   (moto); both instances take jobs at once, as two container groups would. Jobs per hour over
   the whole run, and the size of every job output (what the queue stores) with how many hold
   storage URLs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from starlette.staticfiles import StaticFiles

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "tests")]

from saladcog.serve import CogServer, free_port  # noqa: E402
from tests.aws_standin import AwsStandIn  # noqa: E402
from tests.conftest import librivox  # noqa: E402
from tests.openvoice_fixtures import server_env, write_all  # noqa: E402
from tests.queue_door import QueueDoor, ThreadServer  # noqa: E402
from tests.queue_standin import QueueService, StandInWorker  # noqa: E402
from tests.test_queue_route import LOOPBACK_FETCH, ready, write_wav  # noqa: E402


def speech(seconds: float) -> np.ndarray:
    clips = librivox()
    pause = np.zeros(8000, dtype=np.float32)
    one = np.concatenate([np.concatenate([c.samples, pause]) for c in clips])
    return np.tile(one, int(seconds * 16000 // len(one)) + 1)[: int(seconds * 16000)]


def door_process(cog_url: str) -> subprocess.Popen:
    port = free_port()
    env = {**os.environ, "COG_URL": cog_url, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "queue_door_app:create", "--app-dir",
                                str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port), "--log-level",
                                "warning"], env=env)
    process.url = f"http://127.0.0.1:{port}/queue"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(process.url, timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the queue door process did not start")


def cost_per_job(whisper: CogServer, door_url: str, url: str, rounds: int) -> dict:
    direct, queued = [], []
    with httpx.Client(timeout=None) as http:
        for _ in range(rounds):
            started = time.perf_counter()
            r = http.put(f"{whisper.url('127.0.0.1')}/predictions/{uuid.uuid4()}", json={"input": {"audio": url}})
            direct.append(time.perf_counter() - started)
            assert r.json()["status"] == "succeeded", r.text[:300]
            started = time.perf_counter()
            r = http.post(door_url, json={"input": {"audio": url}}, headers={"Salad-Job-Id": str(uuid.uuid4())})
            queued.append(time.perf_counter() - started)
            assert r.json()["status"] == "succeeded", r.text[:300]
    return {"direct_median_s": statistics.median(direct), "queue_median_s": statistics.median(queued),
            "ratio": statistics.median(queued) / statistics.median(direct), "rounds": rounds}


def mixed_jobs(whisper: CogServer, whisper_door: QueueDoor, base: str, folder: Path) -> dict:
    lengths = [3, 5, 10, 20, 30, 45, 60, 90, 120, 200] * 3
    names = []
    for i, seconds in enumerate(lengths[:24]):
        name = f"speech-{i}-{seconds}s.wav"
        write_wav(folder / name, speech(seconds))
        names.append(name)
    (folder / "notes.txt").write_text("not audio\n" * 100)
    (folder / "noise.bin").write_bytes(np.random.default_rng(0).bytes(20_000))
    asr, tts = QueueService(), QueueService()
    for name in names:
        asr.submit({"input": {"audio": f"{base}/{name}"}})
    asr.submit({"input": {"audio": f"{base}/notes.txt"}})
    asr.submit({"input": {"audio": f"{base}/noise.bin"}})
    asr.submit({})
    for n in (1, 5, 20):
        tts.submit({"input": {"text": "The cat sat on the mat. Hello world, it is a voice." * n, "seed": 1}})
    weights = write_all(folder / "openvoice-weights")
    with CogServer("openvoice", env=server_env(weights)) as openvoice:
        openvoice.wait_ready(300)
        started = time.monotonic()
        with QueueDoor(openvoice.url("127.0.0.1")) as tts_door, \
                StandInWorker(asr, whisper_door.port, "/queue", lambda: ready(whisper.port)), \
                StandInWorker(tts, tts_door.port, "/queue", lambda: ready(openvoice.port)):
            assert asr.wait_done(1800) and tts.wait_done(1800)
        elapsed = time.monotonic() - started
    jobs = [*asr.jobs.values(), *tts.jobs.values()]
    sizes = sorted(len(json.dumps(j.output).encode()) for j in jobs)
    return {
        "jobs": len(jobs), "seconds": elapsed, "jobs_per_hour": len(jobs) / elapsed * 3600,
        "audio_seconds": sum(lengths[:24]),
        "succeeded": sum(j.output.get("status") == "succeeded" for j in jobs),
        "failed_final": sum(j.output.get("status") == "failed" for j in jobs),
        "retried": sum(j.rejections for j in jobs),
        "output_bytes": {"min": sizes[0], "median": statistics.median(sizes), "p90": sizes[int(len(sizes) * 0.9)],
                         "max": sizes[-1]},
        "outputs_with_storage_urls": sum("s3://" in json.dumps(j.output) for j in jobs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clip-seconds", type=float, default=60.0)
    parser.add_argument("--cost-only", action="store_true", help="only the cost per job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as scratch, AwsStandIn(Path(scratch)) as aws:
        folder = Path(scratch) / "served"
        folder.mkdir()
        write_wav(folder / "clip.wav", speech(args.clip_seconds))
        aws.client("s3").create_bucket(Bucket="bench")
        os.environ.update({**aws.env, "SALADCOG_QUEUE_STORAGE": "s3://bench/outputs/"})
        with ThreadServer(StaticFiles(directory=folder)) as files, \
                CogServer("whisper", env=LOOPBACK_FETCH) as whisper:
            base = f"http://127.0.0.1:{files.port}"
            whisper.wait_ready(180)
            door = door_process(whisper.url("127.0.0.1"))
            try:
                cost = cost_per_job(whisper, door.url, f"{base}/clip.wav", args.rounds)
            finally:
                door.terminate()
                door.wait(10)
            print(json.dumps({"cost_per_job": cost}), flush=True)
            if not args.cost_only:
                with QueueDoor(whisper.url("127.0.0.1")) as door:
                    print(json.dumps({"mixed_jobs": mixed_jobs(whisper, door, base, folder)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
