"""The batch node's figures (not tests): run `.venv/bin/python bench/worker.py`.

One Cog server (Whisper, embedded tiny.en, CPU), moto's SQS and S3 on loopback, and an input
server on loopback throttled to a consumer line (LINE_BYTES_PER_S, with FIRST_BYTE_S before each
answer). Each round runs, one after another on the same server:

  direct    the files already on disk, lent to the server back to back (no queue, no download)
  off       `python -m saladcog.worker` with prefetch off (one input held, one fetcher)
  on        the worker with its defaults (3 inputs held, 2 fetchers) and a byte bound that binds

Figures, per round (so that each ratio is taken under one machine load):
  busy       the server's busy share: time inside predictions / first start to last end
  gap_s      median gap between one prediction's end and the next one's start
  speed      audio hours per hour over the same span; on/direct is the goal (>= 0.95)
  runner     the runner's own processing seconds / the span: the same ratio with the machine's
             speed taken out (this machine is shared, so its speed drifts between runs)
  peak/bound the prefetch's peak bytes on disk / SALADCOG_PREFETCH_BYTES
Prediction times come from the worker's own log lines ("predicting", "prediction ... ended").
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from saladcog import spool  # noqa: E402
from saladcog.client import Client  # noqa: E402
from saladcog.serve import CogServer  # noqa: E402
from saladcog.storage import Storage  # noqa: E402
from saladcog.worker import submit as submitting  # noqa: E402
from tests.aws_standin import AwsStandIn  # noqa: E402
from tests.worker_harness import InputServer, WorkerProcess, worker_env  # noqa: E402


JOBS = 12
ROUNDS = 2
LINE_BYTES_PER_S = 2_000_000  # 16 Mbit/s: a slow residential line
FIRST_BYTE_S = 0.2
DEADLINE_S = 600.0
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


def report(name: str, **figures) -> None:
    print(json.dumps({"bench": name, **figures}), flush=True)


def _time(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def spans_from_log(log: str) -> list[tuple[float, float]]:
    starts = {m[1]: _time(m[0]) for m in re.findall(STAMP + r" \S+ INFO predicting \S+ as (\w+)", log)}
    ends = {m[1]: _time(m[0]) for m in re.findall(STAMP + r" \S+ INFO prediction (\w+) ended", log)}
    return sorted((starts[k], ends[k]) for k in ends if k in starts)


def figures(spans: list[tuple[float, float]], outputs: list[dict]) -> dict:
    span = spans[-1][1] - spans[0][0]
    busy = sum(end - start for start, end in spans)
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    audio_s = sum(o["duration"] for o in outputs)
    runner_s = sum(o["metrics"]["processing_seconds"] for o in outputs)
    return {"busy": round(busy / span, 4), "gap_s": round(statistics.median(gaps), 3),
            "audio_hours_per_hour": round(audio_s / span, 2), "runner": round(runner_s / span, 4),
            "span_s": round(span, 2)}


def direct(server: CogServer, spool_dir: Path, source: Path, workdir: Path) -> dict:
    copies = []
    for i in range(JOBS):
        copies.append(workdir / f"direct-{i}.wav")
        shutil.copy(source, copies[-1])
    spans, outputs = [], []
    with Client(server.url("127.0.0.1")) as client:
        for path in copies:
            with spool.lend(path, path.name) as handle:
                started = time.time()
                outputs.append(client.predict({"audio": handle}).output)
                spans.append((started, time.time()))
    return figures(spans, outputs)


def through_worker(aws, server, spool_dir, inputs, tag: str, workdir: Path, **env) -> dict:
    sqs = aws.client("sqs")
    aws.client("s3").create_bucket(Bucket="bench")
    url = submitting.create_queue(sqs, f"bench-{tag}", max_receives=3)
    results = f"s3://bench/{tag}/"
    store = Storage.from_url(results, client=aws.client("s3"))
    jobs = submitting.url_jobs([f"{inputs.url}/long/{tag}-{i}.wav" for i in range(JOBS)], {})
    submitting.submit(sqs, url, jobs, store)
    worker = WorkerProcess(worker_env(aws, server, spool_dir, url, results, SALADCOG_VISIBILITY_TIMEOUT="30", **env),
                           workdir / f"{tag}.log")
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(list(store.names())) < JOBS:
            if time.monotonic() > deadline or worker.process.poll() is not None:
                raise RuntimeError(f"{tag}: results missing\n{worker.log()[-3000:]}")
            time.sleep(0.5)
        worker.signal(signal.SIGTERM)
        worker.wait(60)
    finally:
        worker.stop()
    log = worker.log()
    result = figures(spans_from_log(log), [store.get_json(name)["output"] for name in store.names()])
    peak = re.search(r"budget peak (\d+) files, (\d+) bytes", log)
    result["peak_files"], result["peak_bytes"] = int(peak[1]), int(peak[2])
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        workdir = Path(tmp)
        spool_dir = workdir / "spool"
        spool_dir.mkdir()

        os.environ["SALADCOG_SPOOL_DIR"] = str(spool_dir)
        with AwsStandIn(workdir) as aws, \
                InputServer(workdir, bytes_per_s=LINE_BYTES_PER_S, first_byte_s=FIRST_BYTE_S) as inputs, \
                CogServer("whisper", env={"SALADCOG_SPOOL_DIR": str(spool_dir)}) as server:
            server.wait_ready(timeout=300)
            size = inputs.long.stat().st_size
            bound = int(2.5 * size)  # binds before the 3-file bound does
            report("setting", jobs=JOBS, input_bytes=size, line_bytes_per_s=LINE_BYTES_PER_S,
                   first_byte_s=FIRST_BYTE_S, prefetch_bytes_bound=bound)
            direct(server, spool_dir, inputs.long, workdir)  # warm-up: first-call costs out of the figures
            for round_ in range(ROUNDS):
                base = direct(server, spool_dir, inputs.long, workdir)
                off = through_worker(aws, server, spool_dir, inputs, f"off{round_}", workdir,
                                     SALADCOG_PREFETCH_FILES="1", SALADCOG_FETCH_THREADS="1")
                on = through_worker(aws, server, spool_dir, inputs, f"on{round_}", workdir,
                                    SALADCOG_PREFETCH_BYTES=str(bound))
                report("round", round=round_, direct=base, prefetch_off=off, prefetch_on=on,
                       on_vs_direct_speed=round(on["audio_hours_per_hour"] / base["audio_hours_per_hour"], 3),
                       off_vs_direct_speed=round(off["audio_hours_per_hour"] / base["audio_hours_per_hour"], 3),
                       on_vs_direct_runner=round(on["runner"] / base["runner"], 3),
                       off_vs_direct_runner=round(off["runner"] / base["runner"], 3),
                       peak_vs_bound=round(on["peak_bytes"] / bound, 3))


if __name__ == "__main__":
    main()
