"""Serve the front door: `python -m saladcog.door --port 5000 --upstream http://127.0.0.1:5001`.

Environment: SALADCOG_OPENAI_API_KEY (when set, every path but /health-check needs
`Authorization: Bearer` with it), SALADCOG_OPENAI_MODEL (the model's name; default: the runner's
name in saladcog serve), SALADCOG_OPENAI_MAX_UPLOAD_MB (default 1000, the Salad gateway's own
limit), COG_SHUTDOWN_TIMEOUT (the grace period of the drain on SIGTERM, seconds),
WEBHOOK_AUTH_TOKEN (sent with the drain's webhooks, as Cog sends it), SALADCOG_UPLOAD_DIR
(saladcog.handoff), TMPDIR (where uploads are spooled while their prediction runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

import uvicorn

from saladcog.door.app import create_app
from saladcog.door.drain import grace_seconds
from saladcog.headlimit import UVICORN_HEAD_LIMIT


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
    # Accepted sockets inherit it: without it, small answers written in two pieces wait ~40 ms
    # for the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


class DrainingServer(uvicorn.Server):
    """uvicorn, except that SIGTERM starts the drain (saladcog.door.drain) instead of closing the
    listener at once; the server stops when the drain is over, and the process exits 0."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.drain_task: asyncio.Task | None = None

    def handle_exit(self, sig, frame) -> None:
        if sig != signal.SIGTERM or self.drain_task is not None:
            return super().handle_exit(sig, frame)
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        app = self.config.app

        async def drain():
            await app.state.door.drain.run(app.state.cog, grace_seconds())
            self.should_exit = True

        print("front door: SIGTERM: draining", file=sys.stderr)
        self.drain_task = asyncio.ensure_future(drain())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="::", help="address to listen on; :: is dual stack")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument("--upstream", required=True, help="the Cog server, e.g. http://127.0.0.1:5001")
    parser.add_argument("--model", default=default_model(), help="the model's name in /v1/models")
    args = parser.parse_args(argv)

    app = create_app(
        args.upstream,
        model=args.model,
        max_upload_bytes=int(float(os.environ.get("SALADCOG_OPENAI_MAX_UPLOAD_MB", "1000")) * 1_000_000),
        api_key=os.environ.get("SALADCOG_OPENAI_API_KEY") or None,
    )
    config = uvicorn.Config(app, lifespan="on", access_log=False, log_level="warning", timeout_graceful_shutdown=5,
                            **UVICORN_HEAD_LIMIT)
    print(f"OpenAI audio API front door on [{args.host}]:{args.port} for {args.upstream} (model {args.model})",
          file=sys.stderr)
    DrainingServer(config).run(sockets=[listen(args.host, args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
