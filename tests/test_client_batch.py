"""`saladcog batch`: 20 clips, 4 in flight, one Cog server slot; each clip exactly once, resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client_harness import clips, completed_ids
from saladcog.batch import Batch, list_inputs, result_path
from saladcog.client import Client
from saladcog.serve import CogServer

ROOT = Path(__file__).resolve().parents[1]
FAST = {"beam_size": 1}  # greedy decoding: the same path through the server, half the CPU


@pytest.fixture(scope="module")
def server():
    with CogServer("whisper", front_door="relay") as server:  # concurrency 1: a second request gets 409
        server.wait_ready(timeout=180)
        yield server


@pytest.fixture(scope="module")
def references(server):
    """Each original clip's transcript, from a plain sync request."""
    with Client(server.url("[::1]")) as client:
        return {clip.name: client.predict({"audio": clip, **FAST}).output["text"] for clip in clips()}


def twenty_clips(folder: Path) -> dict[str, str]:
    """20 files in two subfolders, copies of the 5 clips: relative path → original clip name."""
    origin = {}
    for i in range(20):
        clip = clips()[i % 5]
        path = folder / f"part{i // 10}" / f"{i:02d}-{clip.name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, path)
        origin[path.relative_to(folder).as_posix()] = clip.name
    return origin


def manifest(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_batch_of_20_with_4_in_flight_runs_each_clip_exactly_once(server, references, tmp_path):
    origin = twenty_clips(tmp_path / "in")
    out = tmp_path / "out"
    before = len(completed_ids(server.log_path))
    with Client(server.url("[::1]")) as client:
        summary = Batch(client, out, inputs=FAST, in_flight=4).run(list_inputs(tmp_path / "in"), progress=False)
        busy_retries = client.retried["HTTP 409"]
    assert (summary.succeeded, summary.failed, summary.skipped) == (20, 0, 0)
    assert busy_retries > 0  # 4 in flight against one slot: the 409s happened and were retried
    entries = manifest(out)
    assert sorted(e["input"] for e in entries) == sorted(origin)
    for key, clip_name in origin.items():
        result = json.loads(result_path(out, key).read_text())
        assert result["output"]["text"] == references[clip_name]
    # The server ran exactly the 20 predictions the manifest names, each once.
    ran = completed_ids(server.log_path)[before:]
    assert sorted(ran) == sorted(e["id"] for e in entries)
    assert len(set(ran)) == 20


def batch_command(source: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "saladcog.cli", "batch", str(source), "--out", str(out), "--url", url, "-j", "4", "-i", "beam_size=1"]


def test_batch_killed_half_way_resumes_with_the_rest_only(server, references, tmp_path):
    origin = twenty_clips(tmp_path / "in")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = batch_command(tmp_path / "in", out, server.url("[::1]"))
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while len(manifest(out)) < 6 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # no chance to clean up: as a crash or a lost laptop lid
    first.wait(10)
    results_before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    done_before = {json.loads(p.read_text())["input"] for p in results_before}
    listed_before = len(manifest(out))
    assert 6 <= len(done_before) < 20, "the kill must land half way"
    # Predictions in flight at the kill lost their connection: the server cancels them.
    deadline = time.monotonic() + 30
    while server.health() != "READY" and time.monotonic() < deadline:
        time.sleep(0.1)

    log_mark = len(completed_ids(server.log_path))
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    assert second.returncode == 0, second.stderr
    assert f"{len(done_before)} of 20 already done" in second.stderr
    assert "20/20" in second.stderr  # the progress bar reached the end
    entries = manifest(out)
    rerun = [e for e in entries[listed_before:] if not e.get("recovered")]
    assert sorted(e["input"] for e in rerun) == sorted(set(origin) - set(done_before))
    assert all(e["status"] == "succeeded" for e in entries)
    # Results of the first run were not rewritten; the server ran only the missing ones.
    assert {p: p.stat().st_mtime_ns for p in results_before} == results_before
    ran = completed_ids(server.log_path)[log_mark:]
    assert sorted(ran) == sorted(e["id"] for e in rerun)
    for key, clip_name in origin.items():
        assert json.loads(result_path(out, key).read_text())["output"]["text"] == references[clip_name]
