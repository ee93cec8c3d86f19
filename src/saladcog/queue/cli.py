"""`saladcog queue {create,run}`: SaladCloud job queues from the command line.

    export SALAD_API_KEY=...
    saladcog queue create transcripts --organization my-org --project my-project
    saladcog queue run transcripts talks/ --out results/ --storage s3://bucket/inputs/ \\
        --organization my-org --project my-project --subtitles srt
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from saladcog.headlimit import UVICORN_HEAD_LIMIT
from saladcog.queue.batch import QueueApi, QueueRun, show_on_terminal
from saladcog.queue.webhooks import Verifier, receiver_app
from saladcog.storage import Storage, StorageError

# How long the webhook receiver may take to stop when a run ends.
RECEIVER_STOP_S = 10.0


def _api(args) -> QueueApi:
    return QueueApi.from_env(args.organization, args.project)


def _said(command):
    """A refusal the user can act on (no API key, no storage for local files, …): one line, exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ValueError, StorageError) as e:
            print(f"saladcog queue: {e}", file=sys.stderr)
            return 2

    return run


@_said
def cmd_create(args: argparse.Namespace) -> int:
    queue = _api(args).create_queue(args.name)
    print(f"created queue {queue.name} ({queue.id_})")
    return 0


@contextlib.contextmanager
def _receiver(run: QueueRun, port: int) -> Iterator[None]:
    """The signed-webhook receiver on [::]:port for the block; stopped and its port released when
    the block ends (a second run in the same process binds it again)."""
    secret = os.environ.get("SALAD_WEBHOOK_SECRET")
    if not secret:
        raise ValueError("--webhook-url needs SALAD_WEBHOOK_SECRET (your organization's webhook secret key)")
    app = receiver_app(Verifier(secret), run.hints.put)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)  # [::] and 0.0.0.0 both
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **UVICORN_HEAD_LIMIT))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(RECEIVER_STOP_S)
        sock.close()


@_said
def cmd_run(args: argparse.Namespace) -> int:
    storage = Storage.from_url(args.storage) if args.storage else None
    inputs = json.loads(args.inputs) if args.inputs else {}
    run = QueueRun(_api(args), args.queue, Path(args.out), storage=storage, inputs=inputs,
                   input_name=args.input_name, subtitles=args.subtitles, webhook=args.webhook_url)
    for source in args.sources:
        if Path(source).is_dir():
            run.add_folder(Path(source))
        else:  # a text file of URLs, one a line
            run.add_urls([line.strip() for line in Path(source).read_text().splitlines()
                          if line.strip() and not line.startswith("#")])
    with _receiver(run, args.webhook_port) if args.webhook_url else contextlib.nullcontext():
        submitted = run.submit(retry_failed=args.retry_failed)
        print(f"submitted {submitted} job(s) to {args.queue}; {len(run.state.entries)} input(s) in all",
              file=sys.stderr)
        if args.no_follow:
            return 0
        progress = run.follow(poll_s=args.poll, deadline_s=args.deadline, show=show_on_terminal)
    print(file=sys.stderr)
    for entry in run.state.entries.values():
        if entry.status == "failed":
            print(f"failed: {entry.name}: {entry.error}", file=sys.stderr)
    return 0 if progress.failed == 0 and progress.pending + progress.running == 0 else 1


def add_subcommand(sub) -> None:
    """Hook for saladcog.cli: `saladcog queue {create,run} ...`."""
    parser = sub.add_parser("queue", help="SaladCloud job queues: create, submit, follow, collect")
    actions = parser.add_subparsers(dest="queue_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--organization", required=True)
    where.add_argument("--project", required=True)

    create = actions.add_parser("create", parents=[where], help="create a queue (SALAD_API_KEY)")
    create.add_argument("name")
    create.set_defaults(func=cmd_create)

    run = actions.add_parser("run", parents=[where], help="submit inputs as jobs, follow them, collect results")
    run.add_argument("queue")
    run.add_argument("sources", nargs="+", help="folders of audio files, or text files of URLs (one a line)")
    run.add_argument("--out", required=True, help="results folder (its state file makes runs resumable)")
    run.add_argument("--storage", help="s3://bucket/prefix/ for local files (boto3's own AWS_* configuration)")
    run.add_argument("--inputs", help='other prediction inputs as JSON, e.g. \'{"language": "fr"}\'')
    run.add_argument("--input-name", default="audio", help="the prediction input that takes the file (audio)")
    run.add_argument("--subtitles", choices=["srt", "vtt"], help="also write <name>.srt/.vtt")
    run.add_argument("--retry-failed", action="store_true", help="submit failed inputs again")
    run.add_argument("--no-follow", action="store_true", help="submit and return")
    run.add_argument("--poll", type=float, default=10.0, help="seconds between looks at the jobs")
    run.add_argument("--deadline", type=float, default=7 * 24 * 3600, help="stop following after this long")
    run.add_argument("--webhook-url", help="public URL of this machine's receiver, given to each job")
    run.add_argument("--webhook-port", type=int, default=8765, help="port the receiver listens on ([::])")
    run.set_defaults(func=cmd_run)
