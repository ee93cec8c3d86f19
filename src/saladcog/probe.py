"""Readiness / liveness probe for a Cog server, for SaladCloud's exec probes.

GET /health-check always answers 200; the state is in the body's "status". Readiness passes
only on READY; liveness (--liveness) also on BUSY, so that a long prediction does not get the
instance restarted. Exit 0 when the probe passes, 1 otherwise, with the reason on stderr.

Readiness also fails from the moment the instance drains: the entrypoint's supervisor writes a
marker file on SIGTERM (supervisor.drain_marker), so the gateway and the job queue send no more
work while the running prediction finishes. Liveness is not affected.

--timeout is one deadline for the whole check (connect, send, every read), so a server that
trickles its answer a byte at a time still fails in time; the answer is capped in size.

Python standard library only, no imports from this package: the file is copied into any Cog
image (or passed whole to `python -c`) and run with the image's Python.

    python probe.py [--liveness] [--host ::1] [--port $PORT] [--timeout 2]
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import time

PASSING = {"readiness": ("READY",), "liveness": ("READY", "BUSY")}
# coglet's /health-check carries the setup logs (a model download's progress can be long):
# room for those, and still bounded.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def fetch(host, port, path, timeout):
    """(HTTP status, body) of GET `path`, all of it within `timeout` seconds in total."""
    deadline = time.monotonic() + timeout
    chunks, size = [], 0
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            # HTTP/1.0: the server answers without chunking and closes when done.
            sock.sendall(("GET %s HTTP/1.0\r\nHost: probe\r\nConnection: close\r\n\r\n" % path).encode("ascii"))
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise ValueError("answer over %d bytes" % MAX_ANSWER_BYTES)
                chunks.append(chunk)
    except socket.timeout:
        raise socket.timeout("no whole answer within %g s" % timeout) from None
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        raise ValueError("not an HTTP answer")
    return int(status_line[1]), body


def health(host, port, timeout):
    """The status string from GET /health-check."""
    code, body = fetch(host, port, "/health-check", timeout)
    if code != 200:
        raise ValueError("HTTP %d from /health-check" % code)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the parser's depth
        raise ValueError("/health-check body is not JSON") from None
    status = payload.get("status") if isinstance(payload, dict) else None
    if not isinstance(status, str):
        raise ValueError("no status in /health-check body")
    return status


def draining(port):
    """True once the supervisor started to drain (SIGTERM). Same path as supervisor.drain_marker:
    each file is copied alone into images, so neither imports the other."""
    return os.path.exists(os.path.join(tempfile.gettempdir(), "saladcog-%d.draining" % port))


def port_number(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(text)
    return int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Exit 0 when the Cog server is ready (or alive).")
    parser.add_argument("--liveness", action="store_true", help="accept BUSY as well as READY")
    parser.add_argument("--host", default="::1", help="server address (default ::1, the IPv6 port)")
    parser.add_argument("--port", help="server port (default $PORT, else 5000)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds for the whole check")
    args = parser.parse_args(argv)
    if args.port is None:
        source, text = "PORT", os.environ.get("PORT", "5000")
    else:
        source, text = "--port", args.port
    try:
        port = port_number(text)
    except ValueError:
        parser.error("%s must be a TCP port number 1-65535, got %r" % (source, text))
    if not args.timeout > 0:
        parser.error("--timeout must be a positive number of seconds, got %r" % args.timeout)

    kind = "liveness" if args.liveness else "readiness"
    if not args.liveness and draining(port):
        print("readiness: draining (SIGTERM received: the instance is stopping)", file=sys.stderr)
        return 1
    try:
        status = health(args.host, port, args.timeout)
    except (OSError, ValueError) as e:  # refused, timed out, not HTTP, not JSON
        print("%s: cannot read [%s]:%d/health-check: %s" % (kind, args.host, port, e), file=sys.stderr)
        return 1
    if status in PASSING[kind]:
        return 0
    print("%s: status %s" % (kind, status), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
