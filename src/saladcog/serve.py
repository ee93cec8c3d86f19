"""Run a Cog runner under the real Cog HTTP server (coglet), as a built image runs it.

A built image has the runner at /src, `COG_PREDICT_TYPE_STUB` naming it, and the OpenAPI schema
at `.cog/openapi_schema.json` beside the working directory. `CogServer` reproduces that layout
in a scratch working directory, so inputs are validated (422) and `/openapi.json` answers, then
starts `python -m cog.server.http` on `[::]` (dual stack: [::1] and 127.0.0.1 both answer).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import saladcog
from saladcog import probe
from saladcog.schema import openapi_schema

REPO_ROOT = Path(saladcog.__file__).resolve().parents[2]

# `saladcog serve NAME` and the images: which runner class each model uses.
RUNNERS = {
    "whisper": "predict.py:Whisper",
    "whisper-turbo": "predict.py:WhisperTurbo",
    "whisper-diarize": "predict.py:WhisperDiarize",
    "whisper-stream": "predict.py:WhisperStream",
    "distil-whisper": "predict.py:DistilWhisper",
    "openvoice": "predict.py:OpenVoice",
    "metavoice": "predict.py:MetaVoice",
    "parakeet": "predict.py:Parakeet",
}


class ServerError(RuntimeError):
    """The Cog server failed to start or to become ready; the message carries its log."""


def free_port() -> int:
    """A TCP port free on both [::] and 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        return sock.getsockname()[1]


def resolve_runner(ref: str) -> str:
    """`whisper` or `predict.py:Whisper` or `/abs/predict.py:Whisper` → absolute `path:Name`."""
    ref = RUNNERS.get(ref, ref)
    path_text, _, name = ref.partition(":")
    path = Path(path_text)
    if not path.is_absolute():
        path = (Path.cwd() / path) if (Path.cwd() / path).exists() else (REPO_ROOT / path)
    if not path.exists():
        raise ServerError(f"runner file {path} does not exist")
    return f"{path.resolve()}:{name}"


class CogServer:
    """`with CogServer("whisper", env={...}) as server: server.wait_ready(); server.url()`."""

    def __init__(
        self,
        runner: str,
        *,
        host: str = "[::]",
        port: int | None = None,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        extra_args: tuple[str, ...] = (),
        front_door: str | None = None,
    ):
        """`front_door` ("auto", "bind" or "relay"): start the server through
        ipv6_entrypoint.sh in that mode, as an image on Salad does, instead of directly."""
        self.runner = resolve_runner(runner)
        self.host = host
        self.port = port or free_port()
        self.env = dict(env or {})
        self.python = python
        self.extra_args = extra_args
        self.front_door = front_door
        self.process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    @property
    def workdir(self) -> Path:
        assert self._workdir is not None, "server not started"
        return Path(self._workdir.name)

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def url(self, host: str = "[::1]") -> str:
        return f"http://{host}:{self.port}"

    def start(self) -> CogServer:
        self._workdir = tempfile.TemporaryDirectory(prefix="saladcog-serve-")
        schema_dir = self.workdir / ".cog"
        schema_dir.mkdir()
        (schema_dir / "openapi_schema.json").write_text(json.dumps(openapi_schema(self.runner)))
        env = {**os.environ, **self.env}
        env["PORT"] = str(self.port)
        env["COG_PREDICT_TYPE_STUB"] = self.runner
        # coglet starts its worker with the first `python` on PATH: make it this interpreter.
        env["PATH"] = f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"
        # The worker imports saladcog from the same tree as this process (a checkout or worktree).
        src = str(Path(saladcog.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        if self.front_door:
            env["COG_IPV6_MODE"] = self.front_door
            env["COG_PYTHON"] = self.python
            env["COG_INTERNAL_PORT"] = str(free_port())
            command = ["sh", str(REPO_ROOT / "ipv6_entrypoint.sh"), *self.extra_args]
        else:
            command = [self.python, "-m", "cog.server.http", "--host", self.host, *self.extra_args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def health(self) -> str:
        """The /health-check status over [::1] ("" when nothing answers): READY, BUSY, STARTING, …"""
        try:
            return probe.health("::1", self.port, timeout=2.0)
        except (OSError, ValueError):
            return ""

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until /health-check says READY; raise with the server log if it cannot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise ServerError(f"Cog server exited during start:\n{self.log_tail()}")
            status = self.health()
            if status == "READY":
                return
            if status in ("SETUP_FAILED", "DEFUNCT"):
                raise ServerError(f"Cog server setup failed ({status}):\n{self.log_tail()}")
            time.sleep(0.2)
        raise ServerError(f"Cog server not READY after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the server's process group, SIGKILL after `timeout`; return its exit status."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        status = None if self.process is None else self.process.returncode
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return status

    def __enter__(self) -> CogServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
