"""Serve the OpenAI front door: `python -m saladcog.openai_api --port 5000 --upstream URL`.

Environment: SALADCOG_OPENAI_API_KEY (when set, the /v1 routes need `Authorization: Bearer` with
it), SALADCOG_OPENAI_MODEL (the model's name; default: the runner's name in saladcog serve),
SALADCOG_OPENAI_MAX_UPLOAD_MB (default 1000, the Salad gateway's own limit), TMPDIR (where
uploads are spooled while their prediction runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn

from saladcog.openai_api.app import OpenAIDoor
from saladcog.openai_api.uploads import Uploads
from saladcog.openai_api.upstream import Upstream

def default_model() -> str:
    """SALADCOG_OPENAI_MODEL, else the runner's name in `saladcog serve` (whisper, openvoice, …)."""
    if os.environ.get("SALADCOG_OPENAI_MODEL"):
        return os.environ["SALADCOG_OPENAI_MODEL"]
    from saladcog.serve import RUNNERS

    runner = os.environ.get("COG_PREDICT_TYPE_STUB", "").rpartition(":")[2]
    names = {ref.rpartition(":")[2]: name for name, ref in RUNNERS.items()}
    return names.get(runner, runner.lower() or "cog")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; on an IPv6 address it also takes IPv4 (dual stack, like coglet on [::])."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it. uvicorn given sockets leaves Nagle on, and its two writes per
    # answer (head, body) then wait ~40 ms for the client's delayed ACK on every small request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="::", help="address to listen on; :: is dual stack")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument("--upstream", required=True, help="the Cog server, e.g. http://127.0.0.1:5001")
    parser.add_argument("--model", default=default_model(), help="the model's name in /v1/models")
    args = parser.parse_args(argv)

    public = listen(args.host, args.port)
    loopback = listen("127.0.0.1", 0)  # uploads, for the runner only: never on the public port
    loopback_port = loopback.getsockname()[1]
    spool_dir = Path(tempfile.mkdtemp(prefix="saladcog-openai-"))
    upstream = Upstream(args.upstream)
    app = OpenAIDoor(
        upstream,
        Uploads(f"http://127.0.0.1:{loopback_port}"),
        model=args.model,
        spool_dir=spool_dir,
        loopback_port=loopback_port,
        max_upload_bytes=int(float(os.environ.get("SALADCOG_OPENAI_MAX_UPLOAD_MB", "1000")) * 1_000_000),
        api_key=os.environ.get("SALADCOG_OPENAI_API_KEY") or None,
    )
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning",
                            timeout_graceful_shutdown=5)
    print(f"openai front door on [{args.host}]:{args.port} for {args.upstream} (model {args.model})",
          file=sys.stderr)
    try:
        uvicorn.Server(config).run(sockets=[public, loopback])
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
