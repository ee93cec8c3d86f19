"""URL-input fetch benchmark (not a test): run `.venv/bin/python bench/fetch.py`.

`saladcog.inputs.download` (httpx through the address-checking network backend, a new client per
fetch, as each prediction does) against plain httpx (a new client per fetch too, with the same TLS
context) streaming the same body to the same file with no checks, from a file server on 127.0.0.1 (allowed by
SALADCOG_FETCH_ALLOW_NETWORKS' equivalent here): the time per fetch of a 16 KB file and of a
200 MB one, runs alternated, medians; the ratios. Figures go to stdout as JSON lines.
"""

from __future__ import annotations

import http.server
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from saladcog import addresses  # noqa: E402
from saladcog.inputs import Limits, download  # noqa: E402

SIZES = {"small": 16 * 1024, "large": 200 * 1024 * 1024}
ROUNDS = {"small": 200, "large": 5}
CHUNK = 1 << 20


class Body(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        size = SIZES[self.path.strip("/")]
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"\0" * CHUNK
        for start in range(0, size, CHUNK):
            self.wfile.write(block[: min(CHUNK, size - start)])


def main() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Body)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    limits = Limits(max_bytes=1 << 30, allowed_networks=addresses.parse_networks("127.0.0.0/8"))
    tls = httpx.create_ssl_context()
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "body"

        def checked(url: str) -> None:
            with open(target, "wb") as out:
                download(url, out, limits, url)

        def unchecked(url: str) -> None:
            with open(target, "wb") as out, httpx.Client(verify=tls, trust_env=False) as plain, \
                    plain.stream("GET", url) as response:
                for chunk in response.iter_raw():
                    out.write(chunk)

        for name, size in SIZES.items():
            url = f"{base}/{name}"
            times: dict[str, list[float]] = {"checked": [], "plain": []}
            for _ in range(ROUNDS[name]):
                for label, fetch in (("checked", checked), ("plain", unchecked)):
                    started = time.perf_counter()
                    fetch(url)
                    times[label].append(time.perf_counter() - started)
                    assert target.stat().st_size == size
            checked_s, plain_s = statistics.median(times["checked"]), statistics.median(times["plain"])
            print(json.dumps({"bench": f"fetch {name}", "bytes": size, "download_ms": round(checked_s * 1e3, 2),
                              "plain_httpx_ms": round(plain_s * 1e3, 2), "ratio": round(checked_s / plain_s, 3)}),
                  flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
