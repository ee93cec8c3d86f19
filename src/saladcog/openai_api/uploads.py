"""Hand an uploaded file to the Cog runner as an http URL on loopback.

The runner reads inputs as data URIs or http(s) URLs, never as paths on the server, and a data
URI would hold the whole file (a third larger) in memory twice. So the front door serves each
spooled upload itself, on a listener bound to 127.0.0.1 only (never the public port), under an
unguessable one-time token that lives only while its prediction runs; the file is deleted when
the prediction ends, however it ends.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from saladcog.openai_api.forms import Upload

CHUNK = 1 << 20
PREFIX = "/uploads/"


class Uploads:
    def __init__(self, base_url: str):
        self.base_url = base_url  # http://127.0.0.1:PORT of the loopback listener
        self._files: dict[str, Upload] = {}

    @contextlib.contextmanager
    def shared(self, upload: Upload) -> Iterator[str]:
        """The URL the runner downloads `upload` from, for the duration of the block."""
        token = secrets.token_urlsafe(32)
        self._files[token] = upload
        try:
            yield f"{self.base_url}{PREFIX}{token}/{quote(upload.filename)}"
        finally:
            self._files.pop(token, None)
            upload.path.unlink(missing_ok=True)

    async def serve(self, scope, receive, send) -> None:
        """GET /uploads/<token>/<name>: the file, once; anything else 404."""
        token = scope["path"][len(PREFIX):].split("/", 1)[0] if scope["path"].startswith(PREFIX) else ""
        upload = self._files.pop(token, None) if scope["method"] == "GET" else None
        if upload is None:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"),
                        (b"content-length", str(upload.size).encode())],
        })
        with Path(upload.path).open("rb") as f:
            while chunk := f.read(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
