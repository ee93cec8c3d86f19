"""src/saladcog/supervisor.py driven directly (no launcher), with a real Cog server (the echo
predictor) and stand-ins for the two sidecars, which other parts of the project provide: a script
on disk for SaladCloud's job-queue worker binary, a `saladcog.worker` module for the SQS worker.
The stand-ins record what happens to them; the supervisor's plumbing is what is tested."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

from tests.entrypoint_harness import (
    REPO,
    Entrypoint,
    free_port,
    predict_in_background,
    session_left,
    session_processes,
    venv_bin,
)

SUPERVISOR = REPO / "src" / "saladcog" / "supervisor.py"

# Records its start and, on SIGTERM, waits 1 s (a job finishing), asks the Cog server for its
# health (it must still serve) and exits 0.
STANDIN = textwrap.dedent("""\
    import json, os, signal, sys, time, urllib.request
    log = open(os.environ["STANDIN_LOG"], "a", buffering=1)
    log.write("started\\n")
    def stop(signum, frame):
        log.write("TERM\\n")
        time.sleep(1)
        with urllib.request.urlopen(os.environ["STANDIN_HEALTH"], timeout=5) as answer:
            log.write(json.load(answer)["status"] + "\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    for _ in range(6000):
        time.sleep(0.1)
    """)


class Supervised(Entrypoint):
    """supervisor.py itself, with the options the launcher would give it."""

    def __init__(self, tmp: Path, mode: str, python: Path, options=(), env: dict | None = None):
        super().__init__("0.23.1", mode, tmp, env={"TMPDIR": str(tmp), **(env or {})})
        self.internal_port = free_port()
        self.options = [
            "--python", str(python), "--generation", "coglet", "--version", "0.23.1", "--mode", mode,
            "--port", str(self.port), "--internal-port", str(self.internal_port), "--grace", "8", *options,
        ]
        self.python = python
        self.env["PATH"] = f"{python.parent}:/usr/bin:/bin"

    def command(self) -> list[str]:
        return [str(self.python), str(SUPERVISOR), *self.options]


def standin_worker(tmp: Path) -> Path:
    """A `saladcog.worker` module on a PYTHONPATH of its own (the Cog venv has no saladcog)."""
    package = tmp / "standin" / "saladcog"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "worker.py").write_text(STANDIN)
    return package.parent


def wait_for_line(path: Path, line: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {line!r} in {path}: {path.read_text() if path.exists() else 'missing'}")


def test_a_sidecar_that_exits_ends_the_container_and_stops_the_rest(tmp_path):
    log = tmp_path / "worker.log"
    python = venv_bin("0.23.1") / "python"
    env = {"PYTHONPATH": str(standin_worker(tmp_path)), "STANDIN_LOG": str(log), "STANDIN_HEALTH": "unused"}
    with Supervised(tmp_path, "relay", python, ["--sqs-worker"], env) as s:
        s.wait_health("READY")
        wait_for_line(log, "started")
        worker = s.find_child("saladcog.worker")
        os.kill(worker, signal.SIGKILL)
        started = time.monotonic()
        assert s.wait_exit(timeout=10) == 1
        assert time.monotonic() - started < 2.0
        assert "the SQS worker exited (status 137); stopping the Cog server" in s.log()
        assert session_left(s.process.pid) == []


def test_on_sigterm_the_door_and_the_job_queue_worker_stop_first_while_the_server_still_serves(tmp_path):
    """openai mode, the job-queue worker beside the door: SIGTERM reaches the door and the worker
    first; the worker finishes its job against a server that still answers, a sync prediction
    open through the door gets its answer; then everything stops with status 0."""
    log = tmp_path / "worker.log"
    worker = tmp_path / "salad-http-job-queue-worker"
    worker.write_text(f"#!{sys.executable}\n{STANDIN}")
    worker.chmod(0o755)
    python = Path(sys.executable)
    s = Supervised(tmp_path, "openai", python, ["--job-queue-worker", str(worker)],
                   {"PYTHONPATH": str(REPO / "src"), "STANDIN_LOG": str(log)})
    s.env["STANDIN_HEALTH"] = f"http://127.0.0.1:{s.internal_port}/health-check"  # the Cog server
    with s:
        s.wait_health("READY", timeout=60)
        wait_for_line(log, "started")
        caller, result = predict_in_background(s.port, "through the door", seconds=2)
        s.wait_health("BUSY", timeout=10)
        s.process.send_signal(signal.SIGTERM)
        caller.join(timeout=30)
        assert s.wait_exit(timeout=20) == 0, s.log()
        status, body = result["answer"]
        assert (status, body["output"]) == (200, "through the door")
        lines = log.read_text().splitlines()
        assert lines[:2] == ["started", "TERM"] and lines[2] in ("BUSY", "READY"), lines  # still serving
        assert session_processes(s.process.pid) == []
