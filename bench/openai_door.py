"""The OpenAI front door's cost against the socat relay, one run (ratios taken in that run).

    .venv/bin/python bench/openai_door.py [--transcriptions 10] [--big-mb 50] [--big-requests 5] [--huge-mb 1000]

Two paths to the same coglet (the real Cog server, reached on 127.0.0.1):
  relay   client -> [::1]:Q -> socat (ipv6_entrypoint.sh's line) -> coglet: Cog's API, data URIs
  door    client -> [::1]:R -> python -m saladcog.door -> coglet: OpenAI's multipart uploads
Figures (one client, one keep-alive connection, requests in sequence, p50):
  transcription  a 5.3 s LibriVox clip transcribed by the Whisper runner (tiny.en): OpenAI upload
                 to the door vs a data URI through the relay (goal: <= 1.02x)
  big            a --big-mb MB file read by bench/openai_door_runner.py:FileSize (no model, it
                 reads the file as Whisper does): OpenAI upload vs the relay's data URI (<= 1.05x)
  huge           one --huge-mb MB upload through the door, streamed from the client: seconds,
                 and the door's peak RSS (VmHWM)
  health         GET /health-check passed through (reported, not a goal)
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from relay import measure, prediction_call, wait_listening  # noqa: E402
from saladcog.serve import CogServer, free_port  # noqa: E402

BOUNDARY = "benchboundary7MA4YWxkTrZu0gW"
CLIP = ROOT / "tests" / "data" / "speech" / "librivox" / "sense_and_sensibility_01_austen_64kb-0890.wav"  # 5.3 s


def health(conn) -> None:
    conn.request("GET", "/health-check")
    response = conn.getresponse()
    assert response.status == 200 and b"READY" in response.read()


def data_uri_prediction(data: bytes, answered):
    uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    return prediction_call({"audio": uri}, lambda payload: answered(json.loads(payload)["output"]["text"]))


def multipart_head(filename: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()


def openai_upload(data: bytes, answered):
    """POST /v1/audio/transcriptions, multipart, as the OpenAI SDKs send it."""
    body = multipart_head("a.wav") + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    def call(conn):
        for _ in range(1000):  # coglet's slot frees just after it answers: the door says 429
            conn.request("POST", "/v1/audio/transcriptions", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 429:
                break
            time.sleep(0.01)
        assert response.status == 200 and answered(json.loads(payload)["text"]), payload[:200]
    return call


def streamed_upload(host: str, port: int, nbytes: int) -> float:
    """One multipart upload of nbytes zeros, generated as it is sent; its seconds."""
    head, tail = multipart_head("a.wav"), f"\r\n--{BOUNDARY}--\r\n".encode()

    def body():
        yield head
        block = b"\0" * (1 << 20)
        for start in range(0, nbytes, len(block)):
            yield block[: min(len(block), nbytes - start)]
        yield tail

    conn = http.client.HTTPConnection(host, port, timeout=1200)
    started = time.perf_counter()
    conn.request("POST", "/v1/audio/transcriptions", body=body(), headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(len(head) + nbytes + len(tail))})
    response = conn.getresponse()
    payload = response.read()
    assert response.status == 200 and json.loads(payload)["text"] == str(nbytes), payload[:200]
    return time.perf_counter() - started


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Paths:
    """socat and the door in front of one Cog server: {"relay": (host, port), "door": (host, port)}."""

    def __init__(self, server: CogServer, model: str):
        relay_port, door_port = free_port(), free_port()
        self.relay = subprocess.Popen(["socat", "-b", "262144",
                                       f"TCP6-LISTEN:{relay_port},ipv6only=0,reuseaddr,fork,nodelay",
                                       f"TCP4:127.0.0.1:{server.port},nodelay"])
        self.door = subprocess.Popen([sys.executable, "-m", "saladcog.door", "--port", str(door_port),
                                      "--upstream", f"http://127.0.0.1:{server.port}", "--model", model],
                                     env={**os.environ, "PYTHONPATH": str(ROOT / "src"),
                                          "SALADCOG_OPENAI_MAX_UPLOAD_MB": "2000"})
        self.addresses = {"relay": ("::1", relay_port), "door": ("::1", door_port)}
        for host, port in self.addresses.values():
            wait_listening(host, port, timeout=30)

    def close(self) -> None:
        for process in (self.relay, self.door):
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcriptions", type=int, default=10, help="per path")
    parser.add_argument("--big-mb", type=float, default=50.0)
    parser.add_argument("--big-requests", type=int, default=5)
    parser.add_argument("--huge-mb", type=float, default=1000.0)
    parser.add_argument("--health-seconds", type=float, default=2.0)
    args = parser.parse_args()
    rows: list[tuple[str, str, dict]] = []

    clip = CLIP.read_bytes()
    with CogServer("whisper", env={"COG_LOG_LEVEL": "warning"}) as server:
        server.wait_ready(timeout=180)
        paths = Paths(server, "whisper")
        try:
            said = []
            calls = {"relay": data_uri_prediction(clip, lambda text: said.append(text) or True),
                     "door": openai_upload(clip, lambda text: said.append(text) or True)}
            for name, call in calls.items():
                host, port = paths.addresses[name]
                measure(host, port, call, 600.0, 1)  # warm up
                rows.append((name, "transcription (5.3 s clip)", measure(host, port, call, 600.0, args.transcriptions)))
            assert len(set(said)) == 1, set(said)  # the same words by both paths
        finally:
            paths.close()

    big = b"\0" * int(args.big_mb * 1e6)
    with CogServer(str(ROOT / "bench" / "openai_door_runner.py:FileSize"), env={"COG_LOG_LEVEL": "warning"}) as server:
        server.wait_ready(timeout=120)
        paths = Paths(server, "whisper")
        try:
            size_is = lambda text: text == str(len(big))  # noqa: E731
            calls = {"relay": data_uri_prediction(big, size_is), "door": openai_upload(big, size_is)}
            for name, call in calls.items():
                host, port = paths.addresses[name]
                rows.append((name, "health (pass-through)", measure(host, port, health, args.health_seconds, 10**9)))
                rows.append((name, f"big ({args.big_mb:g} MB)", measure(host, port, call, 600.0, args.big_requests)))
            del big, calls
            huge_seconds = streamed_upload(*paths.addresses["door"], int(args.huge_mb * 1e6))
            huge_rss = peak_rss_mib(paths.door.pid)
        finally:
            paths.close()

    print(f"{'path':6} {'request':26} {'n':>5} {'p50 ms':>10} {'p99 ms':>10}")
    for name, kind, figure in rows:
        print(f"{name:6} {kind:26} {figure['n']:5d} {figure['p50_ms']:10.2f} {figure['p99_ms']:10.2f}")
    p50 = {(name, kind): figure["p50_ms"] for name, kind, figure in rows}
    for kind in sorted({kind for _, kind, _ in rows}):
        print(f"door / relay, {kind}: {p50[('door', kind)] / p50[('relay', kind)]:.3f}x")
    print(f"door: one {args.huge_mb:g} MB upload in {huge_seconds:.1f} s; door peak RSS {huge_rss:.0f} MiB")


if __name__ == "__main__":
    main()
