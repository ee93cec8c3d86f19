"""What the worker tests share: an input server on loopback (good clips, unreadable files, 404s, a
stalling answer, optionally throttled), workers as subprocesses, and reads of their logs."""

from __future__ import annotations

import http.server
import re
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

from tests.conftest import SPEECH

SRC = Path(__file__).resolve().parents[1] / "src"
CLIPS = sorted((SPEECH / "librivox").glob("*.wav")) + [SPEECH / "goforward.wav"]
STALL_HOLD_S = 60.0


def long_clip(path: Path, repeats: int = 2) -> Path:
    """Every LibriVox clip one after another, `repeats` times (about 25 s each time)."""
    frames = []
    for _ in range(repeats):
        for clip in CLIPS[:-1]:
            with wave.open(str(clip)) as w:
                params = w.getparams()
                frames.append(w.readframes(w.getnframes()))
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        for chunk in frames:
            out.writeframes(chunk)
    return path


class InputServer:
    """http://127.0.0.1:PORT/good/<n>/<clip name>, /long/<n>.wav, /bad/<n>.wav (not media),
    /missing/<n>.wav (404), /stall/<n>.wav (headers, then nothing); `bytes_per_s` throttles
    every answer and `first_byte_s` delays it, as a consumer line would."""

    def __init__(self, folder: Path, bytes_per_s: float | None = None, first_byte_s: float = 0.0):
        self.long = long_clip(folder / "long.wav")
        self.bytes_per_s = bytes_per_s
        self.first_byte_s = first_byte_s
        self.stop = threading.Event()
        self.served: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.served.append(self.path)
                time.sleep(server.first_byte_s)
                kind, _, rest = self.path.lstrip("/").partition("/")
                if kind == "good":
                    body = (SPEECH / "librivox" / rest.split("/")[-1]).read_bytes() if "sense" in rest \
                        else (SPEECH / "goforward.wav").read_bytes()
                elif kind == "long":
                    body = server.long.read_bytes()
                elif kind == "bad":
                    body = b"this is not audio " * 500
                elif kind == "stall":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    server.stop.wait(STALL_HOLD_S)
                    return
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                step = 64 << 10
                for start in range(0, len(body), step):
                    if server.bytes_per_s:
                        time.sleep(step / server.bytes_per_s)
                    self.wfile.write(body[start:start + step])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> InputServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def good_url(base: str, n: int) -> str:
    clip = CLIPS[n % len(CLIPS)]
    return f"{base}/good/{n}/{clip.name}"


class WorkerProcess:
    """`python -m saladcog.worker` with the given environment; its log in `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "saladcog.worker"],
                env={**env, "PYTHONPATH": str(SRC)}, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def wait_for(condition, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"not within {timeout:.0f} s: {what}")


def stored_lines(log: str) -> list[str]:
    """The results a worker stored (not 'already stored'), by name."""
    return re.findall(r"(?<!already )stored (\S+) \(", log)


def leftover_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def queue_counts(sqs, url: str) -> tuple[int, int]:
    values = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(values["ApproximateNumberOfMessages"]), int(values["ApproximateNumberOfMessagesNotVisible"])


def worker_env(aws, server, spool: Path, queue_url: str, results: str, **extra: str) -> dict[str, str]:
    env = {**aws.environ(), "SALADCOG_QUEUE_URL": queue_url, "SALADCOG_RESULTS_URL": results,
           "SALADCOG_COG_URL": server.url("127.0.0.1"), "SALADCOG_UPLOAD_DIR": str(spool), "SALADCOG_PREFETCH_DIR": str(spool / "prefetch"),
           "SALADCOG_FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
           "SALADCOG_VISIBILITY_TIMEOUT": "6", "SALADCOG_POLL_WAIT": "1", "SALADCOG_STALL_TIMEOUT": "2",
           "SALADCOG_RECOVER_TIMEOUT": "5", "SALADCOG_PREFETCH_FILES": "3", "SALADCOG_STOP_GRACE": "30"}
    env.update(extra)
    return env
