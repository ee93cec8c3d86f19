"""A small HTTP/1.1 keep-alive client for one loopback server, on asyncio streams and h11.

Why not httpx: on every passed-through request httpx's async stack (anyio, httpcore) cost
~2.5 ms here, ten times coglet's own answer to /health-check; this costs ~0.1 ms. The front door
talks to one trusted server on loopback, so a pool of idle connections is all it needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import h11

READ_BYTES = 1 << 20


class UpstreamGone(ConnectionError):
    """The server refused the connection or closed it before answering."""


@dataclasses.dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: h11.Connection

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    _pool: Pool
    _connection: _Connection | None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection goes back to the pool once it is all read
        (`close` drops it if the reader stops before)."""
        while self._connection is not None:
            event = await self._pool.next_event(self._connection)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                connection, self._connection = self._connection, None
                self._pool.release(connection)

    async def read(self) -> bytes:
        try:
            return b"".join([chunk async for chunk in self.chunks()])
        finally:
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Pool:
    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.authority = f"{host}:{port}".encode()
        self._idle: list[_Connection] = []

    async def _connect(self) -> tuple[_Connection, bool]:
        """An idle connection (reused: True) or a new one (asyncio sets TCP_NODELAY)."""
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection, True
            connection.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=READ_BYTES)
        except OSError as e:
            raise UpstreamGone(f"cannot connect to {self.host}:{self.port}: {e.strerror or e}") from e
        return _Connection(reader, writer, h11.Connection(h11.CLIENT)), False

    def release(self, connection: _Connection) -> None:
        state = connection.state
        if state.our_state is h11.DONE and state.their_state is h11.DONE and connection.usable():
            state.start_next_cycle()
            self._idle.append(connection)
        else:
            connection.close()

    async def next_event(self, connection: _Connection):
        while True:
            event = connection.state.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await connection.reader.read(READ_BYTES)
            if not data and connection.state.their_state is h11.SEND_RESPONSE:
                raise UpstreamGone("the server closed the connection before answering")
            connection.state.receive_data(data)

    async def request(self, method: str, target: str, headers: list[tuple[bytes, bytes]],
                      body: bytes | AsyncIterator[bytes] | None = None) -> Response:
        """Send a request and read the answer's head. A body given as bytes (or none) is sent
        again on a fresh connection if a reused one turns out closed; a streamed one is not."""
        replayable = not hasattr(body, "__aiter__")
        while True:
            connection, reused = await self._connect()
            try:
                return await self._exchange(connection, method, target, headers, body)
            except (UpstreamGone, ConnectionError, h11.RemoteProtocolError) as e:
                connection.close()
                if not (reused and replayable):
                    raise UpstreamGone(str(e)) from e
            except BaseException:
                connection.close()
                raise

    async def _exchange(self, connection, method, target, headers, body) -> Response:
        state, writer = connection.state, connection.writer
        if isinstance(body, bytes):
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        elif body is not None and not any(k in (b"content-length", b"transfer-encoding") for k, _ in headers):
            headers = [*headers, (b"transfer-encoding", b"chunked")]
        head = h11.Request(method=method, target=target, headers=[(b"host", self.authority), *headers])
        writer.write(state.send(head))
        if isinstance(body, bytes):
            if body:
                writer.write(state.send(h11.Data(data=body)))
        elif body is not None:
            async for chunk in body:
                if chunk:
                    writer.write(state.send(h11.Data(data=chunk)))
                    await writer.drain()
        writer.write(state.send(h11.EndOfMessage()))
        await writer.drain()
        while True:
            event = await self.next_event(connection)
            if isinstance(event, h11.Response):
                return Response(event.status_code, list(event.headers), self, connection)
            # 1xx informational answers (100 Continue) come before the real one: skip them.
