"""A stand-in for the Hugging Face Hub on loopback: serves local folders under repository names,
over the part of the Hub API that `huggingface_hub.snapshot_download` uses (repository info,
the file tree, and file downloads), so an image's own weights step runs unchanged in a test."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

# One fixed revision for every repository: snapshot_download only needs it to be a commit hash.
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 for the life of a `with` block."""

    def __init__(self, handler, port: int = 0):
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class HubStandin(LoopbackServer):
    """`with HubStandin({"Systran/faster-whisper-large-v3": folder}) as hub: hub.endpoint`."""

    def __init__(self, repos: dict[str, Path], port: int = 0):
        self.repos = {name: Path(folder) for name, folder in repos.items()}
        self.downloads: list[str] = []  # "repo/file" for every file body served
        super().__init__(self._handler(), port)

    def files(self, repo: str) -> list[Path]:
        root = self.repos[repo]
        return sorted(p for p in root.rglob("*") if p.is_file())

    def _handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6:
                    repo, kind = "/".join(parts[2:4]), parts[4]
                    if repo in hub.repos and kind == "revision":
                        return self._json(hub._info(repo), body)
                    if repo in hub.repos and kind == "tree":
                        return self._json(hub._tree(repo), body)
                elif len(parts) >= 5 and parts[2] == "resolve":
                    repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                    if repo in hub.repos:
                        file = (hub.repos[repo] / name).resolve()
                        if file.is_file() and file.is_relative_to(hub.repos[repo].resolve()):
                            return self._file(repo, name, file, body)
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _json(self, document, body: bool) -> None:
                data = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def _file(self, repo: str, name: str, file: Path, body: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(file.stat().st_size))
                self.send_header("ETag", f'"{_oid(file)}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if body:
                    hub.downloads.append(f"{repo}/{name}")
                    with file.open("rb") as source:
                        while chunk := source.read(1 << 20):
                            self.wfile.write(chunk)

        return Handler

    def _info(self, repo: str) -> dict:
        root = self.repos[repo]
        return {
            "id": repo,
            "modelId": repo,
            "sha": COMMIT,
            "private": False,
            "siblings": [{"rfilename": p.relative_to(root).as_posix()} for p in self.files(repo)],
        }

    def _tree(self, repo: str) -> list[dict]:
        root = self.repos[repo]
        return [
            {"type": "file", "oid": _oid(p), "size": p.stat().st_size, "path": p.relative_to(root).as_posix()}
            for p in self.files(repo)
        ]


def _oid(file: Path) -> str:
    """Git's blob id of the file, as the Hub reports it for files not in LFS."""
    digest = hashlib.sha1(b"blob %d\0" % file.stat().st_size)
    with file.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
