"""IPv6 relay overhead: direct vs ipv6_entrypoint.sh's socat line vs SaladCloud's published one.

    python bench/relay.py [--target http|cog] [--seconds 3] [--big-mb 5] [--big-requests 40]

--target cog: the real Cog server (coglet, .venvs/cog-0.23.1 from scripts/setup.sh) on
127.0.0.1 with the tests' echo predictor; small: GET /health-check; big: a prediction whose
input text is --big-mb MB (echoed back, so the relay carries it both ways). coglet frees its one
slot just after answering, so a prediction sent at once may get 409: it is resent, and counted.

--target http (default): a minimal local HTTP/1.1 keep-alive server on 127.0.0.1 (Python's http.server, one
thread per connection, TCP_NODELAY as in uvicorn and coglet; headers and body go in two writes), so the
figures isolate the relay. One client, one keep-alive connection, requests in sequence:
  small: GET, 2-byte answer;   big: POST of a --big-mb MB body, 2-byte answer.
Paths, all in one run:
  direct   client -> 127.0.0.1:P
  ours     client -> [::1]:Q -> socat -b 262144 TCP6-LISTEN:Q,...,nodelay TCP4:127.0.0.1:P,nodelay
  salad    client -> [::1]:R -> socat TCP6-LISTEN:R,fork TCP4:127.0.0.1:P  (default options)
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from saladcog.serve import free_port

REPO = Path(__file__).resolve().parents[1]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def setup(self) -> None:
        # Like uvicorn (asyncio) and coglet: no Nagle delay on the server's own socket.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        remaining = int(self.headers["Content-Length"])
        while remaining:
            remaining -= len(self.rfile.read(min(remaining, 1 << 20)))
        self._answer()

    def log_message(self, *args) -> None:
        pass


def wait_listening(host: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on [{host}]:{port}")


def measure(host: str, port: int, call, seconds: float, max_requests: int) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    latencies = []
    start = time.perf_counter()
    while len(latencies) < max_requests and time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call(conn)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    conn.close()
    latencies.sort()
    return {
        "n": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def prediction_call(inputs: dict, answered):
    """A call that POSTs one prediction and checks its answer with `answered(payload)`; resent on
    coglet's 409, which it gives for a moment after answering the previous one (its slot frees
    just after)."""
    body = json.dumps({"input": inputs}).encode()

    def call(conn):
        for _ in range(1000):
            conn.request("POST", "/predictions", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 409:
                break
            time.sleep(0.005)
        assert response.status == 200 and answered(payload), payload[:200]
    return call


def http_target() -> tuple[int, object, object, callable]:
    """The minimal server; (port, small call, big call factory, stop)."""
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def small(conn):
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"

    def big(nbytes):
        body = b"\0" * nbytes

        def call(conn):
            conn.request("POST", "/", body=body, headers={"Content-Type": "application/octet-stream"})
            assert conn.getresponse().read() == b"ok"
        return call

    return port, small, big, server.shutdown


def cog_target() -> tuple[int, object, object, callable]:
    """coglet from .venvs/cog-0.23.1 with the echo predictor, on 127.0.0.1."""
    python = REPO / ".venvs" / "cog-0.23.1" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run scripts/setup.sh")
    workdir = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    shutil.copytree(REPO / "tests" / "fixtures" / "echo", workdir, dirs_exist_ok=True)
    port = free_port()
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}", "PORT": str(port),
           "COG_PREDICT_TYPE_STUB": "predict.py:Predictor", "COG_LOG_LEVEL": "warning"}
    server = subprocess.Popen([str(python), "-m", "cog.server.http", "--host", "127.0.0.1"], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health-check")
            if json.loads(conn.getresponse().read())["status"] == "READY":
                break
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the Cog server did not become READY")
        time.sleep(0.2)

    def predict_call(text):
        return prediction_call({"text": text}, lambda payload: len(payload) >= len(text))

    def health(conn):
        conn.request("GET", "/health-check")
        response = conn.getresponse()
        assert response.status == 200 and b"READY" in response.read()

    def stop():
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir)

    return port, health, lambda nbytes: predict_call("x" * nbytes), stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["http", "cog"], default="http")
    parser.add_argument("--seconds", type=float, default=3.0, help="per path, small requests")
    parser.add_argument("--big-mb", type=float, default=5.0)
    parser.add_argument("--big-requests", type=int, default=40)
    args = parser.parse_args()

    target, small, make_big, stop = (cog_target if args.target == "cog" else http_target)()

    ours, salad = free_port(), free_port()
    relays = {
        "ours": subprocess.Popen(["socat", "-b", "262144", f"TCP6-LISTEN:{ours},ipv6only=0,reuseaddr,fork,nodelay",
                                  f"TCP4:127.0.0.1:{target},nodelay"]),
        "salad": subprocess.Popen(["socat", f"TCP6-LISTEN:{salad},fork", f"TCP4:127.0.0.1:{target}"]),
    }
    paths = {"direct": ("127.0.0.1", target), "ours": ("::1", ours), "salad": ("::1", salad)}
    try:
        for host, port in paths.values():
            wait_listening(host, port)
        big = make_big(int(args.big_mb * 1e6))
        results = {}
        for name, (host, port) in paths.items():
            measure(host, port, small, 0.3, 200)  # warm up
            results[name] = (
                measure(host, port, small, args.seconds, 10**9),
                measure(host, port, big, 60.0, args.big_requests),
            )
    finally:
        for relay in relays.values():
            relay.terminate()
            relay.wait(timeout=5)
        stop()

    print(f"target: {args.target}")
    print(f"{'path':8} {'small req/s':>11} {'p50 ms':>8} {'p99 ms':>8}   {args.big_mb:g} MB req/s {'p50 ms':>8} {'p99 ms':>8}")
    for name, (small, large) in results.items():
        print(f"{name:8} {small['rps']:11.0f} {small['p50_ms']:8.3f} {small['p99_ms']:8.3f}   "
              f"{large['rps']:11.1f} {large['p50_ms']:8.2f} {large['p99_ms']:8.2f}")
    direct = results["direct"][0]["p50_ms"]
    for name in ("ours", "salad"):
        print(f"{name}: small p50 = {results[name][0]['p50_ms'] / direct:.2f}x direct; "
              f"5 MB throughput = {results[name][1]['rps'] / results['direct'][1]['rps']:.2f}x direct")


if __name__ == "__main__":
    main()
