"""Run ipv6_entrypoint.sh against a real Cog server from one of the .venvs/cog-X virtualenvs.

Each run gets ephemeral ports, its own process session (so cleanup reaches every child), and a
working directory holding the echo predictor and its cog.yaml, as /src does in an image.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "ipv6_entrypoint.sh"
ECHO = Path(__file__).resolve().parent / "fixtures" / "echo"
COG_VERSIONS = ("0.9.9", "0.16.12", "0.23.1")


def venv_bin(cog_version: str) -> Path:
    path = REPO / ".venvs" / f"cog-{cog_version}" / "bin"
    if not (path / "python").exists():
        raise RuntimeError(f"{path}/python is missing: run scripts/setup.sh (it makes .venvs/cog-{cog_version})")
    return path


def free_port() -> int:
    """A port free on [::] and 127.0.0.1, whose neighbour (the default internal port) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", 0))
            port = sock.getsockname()[1]
        if port < 65535 and port_free(port + 1):
            return port
    raise RuntimeError("no free port pair found")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind(("::", port))
        except OSError:
            return False
    return True


def request(host: str, port: int, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
    """(HTTP status, parsed JSON body) over a fresh connection to host (an IP literal)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def health(host: str, port: int) -> str | None:
    """The /health-check status, or None when nothing answers."""
    try:
        return request(host, port, "GET", "/health-check", timeout=2.0)[1]["status"]
    except (OSError, ValueError, http.client.HTTPException):
        return None


# coglet frees its one slot just after it answers: a 409 this soon after the last answer is
# that race (a loaded machine widens it), not a busy server.
SLOT_RELEASE_S = 2.0


def predict(host: str, port: int, text: str, seconds: float = 0.0) -> dict:
    deadline = time.monotonic() + SLOT_RELEASE_S
    while True:
        status, body = request(host, port, "POST", "/predictions", {"input": {"text": text, "seconds": seconds}})
        if status != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200, (status, body)
    return body


def predict_in_background(port: int, text: str, seconds: float) -> tuple[threading.Thread, dict]:
    """A sync prediction over [::1] on a thread: join the thread, then the dict's "answer" is
    (HTTP status, body)."""
    result: dict = {}

    def call():
        result["answer"] = request("::1", port, "POST", "/predictions",
                                   {"input": {"text": text, "seconds": seconds}}, timeout=30)

    caller = threading.Thread(target=call)
    caller.start()
    return caller, result


def children(pid: int) -> list[int]:
    """Child processes of `pid`, whichever of its threads started them (coglet's worker comes
    from a runtime thread, not the main one)."""
    found = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return []


def session_left(sid: int, timeout: float = 5.0) -> list[int]:
    """The processes of session `sid` still alive after waiting up to `timeout` for them to go."""
    deadline = time.monotonic() + timeout
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return session_processes(sid)


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes in session `sid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


class Entrypoint:
    """ipv6_entrypoint.sh with the echo predictor; `with Entrypoint(...) as e:` stops everything."""

    def __init__(self, cog_version: str, mode: str, tmp: Path, env: dict | None = None, args=(), path_bin=None,
                 launcher=()):
        """`launcher`: a command the entrypoint runs under (e.g. unshare, to make it PID 1)."""
        self.cog_version = cog_version
        self.port = free_port()
        self.workdir = tmp / f"src-{cog_version}-{mode}-{self.port}"
        shutil.copytree(ECHO, self.workdir)
        self.log_path = self.workdir / "entrypoint.log"
        bin_dir = path_bin or f"{venv_bin(cog_version)}:/usr/bin:/bin"
        self.env = {
            "PATH": str(bin_dir),
            "HOME": os.environ.get("HOME", "/root"),
            "PORT": str(self.port),
            "COG_IPV6_MODE": mode,
            "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",  # set by `cog build` in coglet images
            "COG_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.args = list(args)
        self.launcher = list(launcher)
        self.process: subprocess.Popen | None = None

    def start(self) -> "Entrypoint":
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*self.launcher, *self.command()],
            cwd=self.workdir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def command(self) -> list[str]:
        return ["/bin/sh", str(ENTRYPOINT), *self.args]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_health(self, want: str = "READY", host: str = "::1", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if health(host, self.port) == want:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"entrypoint exited {self.process.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"no {want} on [{host}]:{self.port} within {timeout} s:\n{self.log()}")

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def find_child(self, word: str) -> int:
        """The entrypoint's direct child whose command line contains `word`."""
        for pid in children(self.process.pid):
            if any(word in part for part in cmdline(pid)):
                return pid
        raise AssertionError(f"no child with {word!r} under {self.process.pid}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> "Entrypoint":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
