"""The webhook receiver (saladcog.webhooks) served by real uvicorn, sent hostile bodies over [::1]."""

from __future__ import annotations

import socket

import httpx
import pytest

from saladcog.webhooks import Receiver


@pytest.fixture
def receiver(tmp_path):
    with Receiver(tmp_path / "hooks.sqlite", host="::1") as rx:
        yield rx


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"id": "deep", "status": "succeeded", "output": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "nested too deeply"),
        (b'{"id": "obj-status", "status": {"state": "succeeded"}}', "status is a JSON dict, not a string"),
        (b'{"id": "list-status", "status": ["succeeded"]}', "status is a JSON list, not a string"),
        (b'{"id": ["not", "a", "string"], "status": "succeeded"}', "no prediction id"),
        (b"\xff\xfe not utf-8", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_malformed_bodies_are_the_senders_fault_400_and_the_store_keeps_working(receiver, body, message):
    answer = httpx.post(receiver.url, content=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
    # Not counted as an outage of the store (503 would make Cog retry it for ~7 minutes).
    health = httpx.get(receiver.url.replace("/webhook", "/health")).json()
    assert (health["rejected"], health["stored"]) == (0, 0)
    good = httpx.post(receiver.url, json={"id": "after", "status": "succeeded", "output": "ok"})
    assert good.json() == {"stored": True}
    assert receiver.store.completed("after")["output"] == "ok"


def test_header_flood_is_refused_before_it_is_held(receiver):
    """20,000 headers (~600 KB): refused (400) while the head is read, and the receiver still works."""
    flood = b"".join(b"X-Flood-%05d: %s\r\n" % (i, b"x" * 16) for i in range(20_000))
    with socket.create_connection(("::1", receiver.port), timeout=30) as sock:
        body = b'{"id": "flood", "status": "succeeded"}'  # a webhook it would store
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body) + flood + b"\r\n" + body)
        status = sock.makefile("rb").readline()
    assert status.split()[1] == b"400", status
    assert receiver.store.events("flood") == []
    assert httpx.get(receiver.url.replace("/webhook", "/health")).status_code == 200
