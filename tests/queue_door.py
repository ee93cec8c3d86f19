"""Loopback HTTP servers for the queue tests: an ASGI app under uvicorn on [::] (dual stack) in a
thread, and the queue route served as the front door serves it (the route plus the Cog server's
httpx client at `app.state.cog`)."""

from __future__ import annotations

import socket
import threading

import httpx
import uvicorn
from starlette.applications import Starlette

from saladcog.door.routers import queue
from tests.queue_standin import wait_until


class ThreadServer:
    def __init__(self, app):
        self.app = app
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind(("::", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "the server to start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


class QueueDoor(ThreadServer):
    def __init__(self, cog_url: str):
        app = Starlette(routes=queue.routes)
        app.state.cog = httpx.AsyncClient(base_url=cog_url, timeout=httpx.Timeout(30))
        super().__init__(app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{queue.PATH}"

    @property
    def runs(self):
        return self.app.state.queue_runs
