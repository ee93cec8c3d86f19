"""A loopback stand-in for the GitHub release of SaladCloud's job-queue worker: serves
`<tag>/salad-http-job-queue-worker_x86_64.tar.gz` and its `.sha256` (sha256sum's output, as the
release publishes it), so the images' build step that fetches the worker runs unchanged."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile

from hub_standin import LoopbackServer

ASSET = "salad-http-job-queue-worker_x86_64.tar.gz"
BINARY = "salad-http-job-queue-worker"
# A stand-in for the worker binary: a shell script that says what it is.
STANDIN_BINARY = b"#!/bin/sh\necho 'salad-http-job-queue-worker stand-in'\n"


def tarball(content: bytes = STANDIN_BINARY) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(BINARY)
        info.size, info.mode = len(content), 0o755
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class ReleaseStandin(LoopbackServer):
    """`with ReleaseStandin("v0.6.0") as release: release.endpoint` (the releases/download URL)."""

    def __init__(self, tag: str, port: int = 0, data: bytes | None = None, published_sha256: str | None = None):
        data = tarball() if data is None else data
        digest = published_sha256 or hashlib.sha256(data).hexdigest()
        self.files = {f"/{tag}/{ASSET}": data, f"/{tag}/{ASSET}.sha256": f"{digest}  {ASSET}\n".encode()}
        super().__init__(self._handler(), port)

    def _handler(self):
        release = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                body = release.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
