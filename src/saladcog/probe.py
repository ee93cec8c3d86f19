"""Readiness / liveness probe for a Cog server, for SaladCloud's exec probes.

GET /health-check always answers 200; the state is in the body's "status". Readiness passes
only on READY; liveness (--liveness) also on BUSY, so that a long prediction does not get the
instance restarted. Exit 0 when the probe passes, 1 otherwise, with the reason on stderr.

Python standard library only, no imports from this package: the file is copied into any Cog
image (or passed whole to `python -c`) and run with the image's Python.

    python probe.py [--liveness] [--host ::1] [--port $PORT] [--timeout 2]
"""

import argparse
import http.client
import json
import os
import sys

PASSING = {"readiness": ("READY",), "liveness": ("READY", "BUSY")}


def health(host, port, timeout):
    """The status string from GET /health-check."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health-check")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError("HTTP %d from /health-check" % response.status)
    payload = json.loads(body.decode("utf-8"))
    status = payload.get("status") if isinstance(payload, dict) else None
    if not isinstance(status, str):
        raise ValueError("no status in /health-check body")
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(description="Exit 0 when the Cog server is ready (or alive).")
    parser.add_argument("--liveness", action="store_true", help="accept BUSY as well as READY")
    parser.add_argument("--host", default="::1", help="server address (default ::1, the IPv6 port)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds")
    args = parser.parse_args(argv)

    kind = "liveness" if args.liveness else "readiness"
    try:
        status = health(args.host, args.port, args.timeout)
    except (OSError, ValueError) as e:  # refused, timed out, not JSON
        print("%s: cannot read [%s]:%d/health-check: %s" % (kind, args.host, args.port, e), file=sys.stderr)
        return 1
    if status in PASSING[kind]:
        return 0
    print("%s: status %s" % (kind, status), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
