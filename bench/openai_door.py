"""The OpenAI front door's cost: coglet directly vs the socat relay vs the front door, one run.

    .venv/bin/python bench/openai_door.py [--seconds 3] [--big-mb 50] [--big-requests 5]

One coglet (the real Cog server, on [::], reached on 127.0.0.1) runs bench/openai_door_runner.py:FileSize, a
runner with Whisper's inputs that only reads its file. Three paths to it, in one run:
  direct  client -> 127.0.0.1:P (coglet)
  relay   client -> [::1]:Q -> socat (ipv6_entrypoint.sh's line) -> coglet
  door    client -> [::1]:R -> python -m saladcog.door -> coglet
Figures (one client, one keep-alive connection, requests in sequence):
  health   GET /health-check (the door passes it through)
  predict  POST /predictions with a 1 KB data URI (Cog's API, passed through by the door)
  big      a --big-mb MB file: as a data URI in POST /predictions on every path (what Cog's API
           takes), and through the door also as OpenAI's multipart upload to
           /v1/audio/transcriptions (spooled to disk, served to coglet on loopback)
and the door's peak RSS (VmHWM) after the uploads. `--upload-mb 500` instead sends one upload of
that size through the door only (streamed from the client, never whole in its memory) and reports
the time and the door's peak RSS.
"""

from __future__ import annotations

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


def health(conn) -> None:
    conn.request("GET", "/health-check")
    response = conn.getresponse()
    assert response.status == 200 and b"READY" in response.read()


def cog_prediction(nbytes: int):
    """POST /predictions with an nbytes file as a data URI."""
    uri = "data:application/octet-stream;base64," + base64.b64encode(b"\0" * nbytes).decode()
    return prediction_call({"audio": uri}, lambda payload: json.loads(payload)["output"]["text"] == str(nbytes))


def openai_upload(nbytes: int):
    """POST /v1/audio/transcriptions, multipart, as the OpenAI SDKs send it."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    body = head + b"\0" * nbytes + f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    def call(conn):
        conn.request("POST", "/v1/audio/transcriptions", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        assert response.status == 200 and json.loads(payload)["text"] == str(nbytes), payload[:200]
    return call


def streamed_openai_upload(host: str, port: int, nbytes: int) -> float:
    """One multipart upload of nbytes zeros, generated as it is sent; its seconds."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def body():
        yield head
        block = b"\0" * (1 << 20)
        for start in range(0, nbytes, len(block)):
            yield block[: min(len(block), nbytes - start)]
        yield tail

    conn = http.client.HTTPConnection(host, port, timeout=600)
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


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per path, small requests")
    parser.add_argument("--big-mb", type=float, default=50.0)
    parser.add_argument("--big-requests", type=int, default=5)
    parser.add_argument("--upload-mb", type=float, help="only: one upload of this size through the door")
    args = parser.parse_args()
    big = int(args.big_mb * 1e6)

    with CogServer(str(ROOT / "bench" / "openai_door_runner.py:FileSize"), env={"COG_LOG_LEVEL": "warning"}) as server:
        server.wait_ready(timeout=120)
        target, relay_port, door_port = server.port, free_port(), free_port()
        relay = subprocess.Popen(["socat", "-b", "262144", f"TCP6-LISTEN:{relay_port},ipv6only=0,reuseaddr,fork,nodelay",
                                  f"TCP4:127.0.0.1:{target},nodelay"])
        door = subprocess.Popen([sys.executable, "-m", "saladcog.door", "--port", str(door_port),
                                 "--upstream", f"http://127.0.0.1:{target}", "--model", "whisper"],
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        paths = {"direct": ("127.0.0.1", target), "relay": ("::1", relay_port), "door": ("::1", door_port)}
        try:
            for host, port in paths.values():
                wait_listening(host, port)
            if args.upload_mb:
                seconds = streamed_openai_upload("::1", door_port, int(args.upload_mb * 1e6))
                print(f"door: {args.upload_mb:g} MB OpenAI upload in {seconds:.2f} s; "
                      f"door peak RSS {peak_rss_mib(door.pid):.0f} MiB")
                return
            results: dict[str, dict] = {}
            small_prediction = cog_prediction(1000)
            big_prediction = cog_prediction(big)
            for name, (host, port) in paths.items():
                measure(host, port, health, 0.3, 200)  # warm up
                results[name] = {
                    "health": measure(host, port, health, args.seconds, 10**9),
                    "predict": measure(host, port, small_prediction, args.seconds, 10**9),
                    "big": measure(host, port, big_prediction, 600.0, args.big_requests),
                }
            host, port = paths["door"]
            results["door"]["openai-small"] = measure(host, port, openai_upload(1000), args.seconds, 10**9)
            results["door"]["openai-big"] = measure(host, port, openai_upload(big), 600.0, args.big_requests)
            door_rss = peak_rss_mib(door.pid)
        finally:
            for process in (relay, door):
                process.terminate()
                process.wait(timeout=10)

    print(f"{'path':7} {'request':13} {'n':>5} {'p50 ms':>9} {'p99 ms':>9}")
    for name, figures in results.items():
        for kind, figure in figures.items():
            label = f"{kind} ({args.big_mb:g} MB)" if "big" in kind else kind
            print(f"{name:7} {label:13} {figure['n']:5d} {figure['p50_ms']:9.2f} {figure['p99_ms']:9.2f}")
    relay_p50 = {kind: results["relay"][kind]["p50_ms"] for kind in ("health", "predict", "big")}
    for kind in ("health", "predict", "big"):
        print(f"door / relay, {kind}: {results['door'][kind]['p50_ms'] / relay_p50[kind]:.2f}x")
    print(f"door OpenAI upload / relay Cog data URI: small {results['door']['openai-small']['p50_ms'] / relay_p50['predict']:.2f}x, "
          f"{args.big_mb:g} MB {results['door']['openai-big']['p50_ms'] / relay_p50['big']:.2f}x")
    print(f"door peak RSS: {door_rss:.0f} MiB")


if __name__ == "__main__":
    main()
