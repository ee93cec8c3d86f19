"""Loopback HTTP servers for the queue tests: an ASGI app under uvicorn on [::] (dual stack) in a
thread, and the real front door app (saladcog.door.app.create_app) whose queue route the tests
drive."""

from __future__ import annotations

import socket
import threading

import uvicorn

from saladcog.door.app import create_app
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
        super().__init__(create_app(cog_url, model="whisper"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{queue.PATH}"

    @property
    def runs(self):
        return self.app.state.queue_runs
