"""ipv6_entrypoint.sh in openai mode keeps the relay mode's lifecycle: the front door and the Cog
server live and die together, and SIGTERM stops both."""

from __future__ import annotations

import os
import signal
import time

from entrypoint_harness import ECHO, children, cmdline, session_processes
from saladcog.serve import CogServer

ECHO_RUNNER = f"{ECHO / 'predict.py'}:Predictor"


def front_door_pid(server: CogServer) -> int:
    for pid in children(server.process.pid):
        if "saladcog.openai_api" in cmdline(pid):
            return pid
    raise AssertionError(f"no front door under {server.process.pid}:\n{server.log_tail()}")


def test_front_door_death_ends_the_container_nonzero():
    with CogServer(ECHO_RUNNER, front_door="openai") as server:
        server.wait_ready(timeout=60)
        os.kill(front_door_pid(server), signal.SIGKILL)
        started = time.monotonic()
        assert server.process.wait(timeout=10) != 0
        assert time.monotonic() - started < 2.0
        assert server.health() == ""


def test_sigterm_stops_server_and_front_door():
    with CogServer(ECHO_RUNNER, front_door="openai") as server:
        server.wait_ready(timeout=60)
        assert "mode openai" in server.log_tail(200)
        os.kill(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=15)
        deadline = time.monotonic() + 5
        while session_processes(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session_processes(server.process.pid) == []
