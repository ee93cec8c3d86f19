"""`saladcog worker run|submit|status|collect`.

    saladcog worker submit talks/ --queue talks --create --upload s3://bucket/inputs/ --results s3://bucket/results/
    saladcog worker submit urls.txt --queue talks --results s3://bucket/results/ --input transcription=srt
    saladcog worker status --queue talks --results s3://bucket/results/ [--watch 10]
    saladcog worker collect out/ --results s3://bucket/results/
    saladcog worker run        # the node itself, from the environment (docs/worker.md)

--queue and --results default to SALADCOG_QUEUE_URL and SALADCOG_RESULTS_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import botocore.exceptions

from saladcog.storage import Storage, StorageError
from saladcog.worker import submit as submitting
from saladcog.worker.node import sqs_client


def _inputs(pairs: list[str]) -> dict:
    """`key=value` pairs; a value that parses as JSON (true, 3, 0.5) is taken as that."""
    values = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"--input {pair!r} is not key=value")
        try:
            values[key] = json.loads(text)
        except ValueError:
            values[key] = text
    return values


def _guarded(func):
    """`func`, with a refused request or a bad argument said in one line and exit status 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (ValueError, StorageError, botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            print(f"saladcog worker: {e}", file=sys.stderr)
            return 1

    return run


def cmd_run(_args: argparse.Namespace) -> int:
    from saladcog.worker.__main__ import main

    return main()


def cmd_submit(args: argparse.Namespace) -> int:
    sqs = sqs_client()
    url = (submitting.create_queue(sqs, args.queue, fifo=args.fifo, max_receives=args.max_receives,
                                   visibility_s=args.visibility)
           if args.create else submitting.queue_url(sqs, args.queue))
    inputs = _inputs(args.input)
    source = args.source
    if source.startswith("s3://"):
        jobs = submitting.s3_jobs(source, inputs)
    elif Path(source).is_dir():
        if not args.upload:
            raise ValueError("a folder's files are uploaded first: name where with --upload s3://bucket/prefix/")
        jobs = submitting.folder_jobs(Path(source), Storage.from_url(args.upload), inputs)
    elif Path(source).is_file():
        jobs = submitting.url_jobs(submitting.url_list(Path(source)), inputs)
    else:
        raise ValueError(f"{source} is not a folder, a file of URLs or an s3:// prefix")
    done = submitting.submit(sqs, url, jobs, Storage.from_url(args.results))
    print(f"{done.sent} messages sent to {url}; {done.skipped} skipped (a result is stored)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    sqs = sqs_client()
    url = submitting.queue_url(sqs, args.queue)
    results = Storage.from_url(args.results)
    deadline = time.monotonic() + (args.watch_for or 0)
    while True:
        state = submitting.progress(sqs, url, results)
        print(state.line(), flush=True)
        if not args.watch or time.monotonic() >= deadline or not (state.waiting + state.in_flight):
            return 0
        time.sleep(args.watch)


def cmd_collect(args: argparse.Namespace) -> int:
    count = submitting.collect(Storage.from_url(args.results), Path(args.out))
    print(f"{count} result files written to {args.out}")
    return 0


def add_subcommand(sub) -> None:
    worker = sub.add_parser("worker", help="the SQS/S3 batch node and its submitting side")
    commands = worker.add_subparsers(dest="worker_command", required=True)

    def common(parser, queue: bool = True) -> None:
        if queue:
            parser.add_argument("--queue", default=os.environ.get("SALADCOG_QUEUE_URL"),
                                required=not os.environ.get("SALADCOG_QUEUE_URL"), help="queue name or URL")
        parser.add_argument("--results", default=os.environ.get("SALADCOG_RESULTS_URL"),
                            required=not os.environ.get("SALADCOG_RESULTS_URL"), help="s3://bucket/prefix/ of the results")

    run = commands.add_parser("run", help="run the worker beside a Cog server (settings from the environment)")
    run.set_defaults(func=cmd_run)

    send = commands.add_parser("submit", help="a folder, a file of URLs or an s3:// prefix -> queue messages")
    send.add_argument("source", help="folder (uploaded first), file of http(s)/s3:// URLs, or s3://bucket/prefix/")
    common(send)
    send.add_argument("--upload", help="s3://bucket/prefix/ where a folder's files are uploaded")
    send.add_argument("--input", action="append", default=[], metavar="KEY=VALUE",
                      help="a runner input for every job (repeat), e.g. transcription=srt")
    send.add_argument("--create", action="store_true", help="create the queue and its dead-letter queue")
    send.add_argument("--fifo", action="store_true", help="with --create: a FIFO queue (name ends .fifo)")
    send.add_argument("--max-receives", type=int, default=5, help="with --create: receives before the dead-letter queue")
    send.add_argument("--visibility", type=int, default=30, help="with --create: the queue's visibility timeout (s)")
    send.set_defaults(func=_guarded(cmd_submit))

    status = commands.add_parser("status", help="queue counts, results stored, progress bar and ETA")
    common(status)
    status.add_argument("--watch", type=float, help="print again every N seconds until the queue is empty")
    status.add_argument("--watch-for", type=float, default=24 * 3600.0, help="stop watching after N seconds")
    status.set_defaults(func=_guarded(cmd_status))

    collect = commands.add_parser("collect", help="download the results into a folder")
    collect.add_argument("out", help="folder to write the results into")
    common(collect, queue=False)
    collect.set_defaults(func=_guarded(cmd_collect))


