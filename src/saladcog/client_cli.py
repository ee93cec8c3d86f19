"""`saladcog predict`, `saladcog batch`, `saladcog receive`: call any Cog server from a shell.

    saladcog predict --url http://[::1]:5000 -i audio=@talk.wav -i language=en -o talk.json
    saladcog predict --url https://xyz.salad.cloud --api-key $KEY -i audio=@long.mp3 \\
        --webhook-url https://me.example/webhook --listen '[::]:8080'
    saladcog batch recordings/ --out transcripts/ --url https://xyz.salad.cloud -j 4
    saladcog receive --listen '[::]:8080' --db webhooks.sqlite

`-i` works as in `cog predict`: `name=value`, `name=@path` for a local file (sent inline as a
data URI); values are typed from the server's OpenAPI schema. `predict` goes async by itself when
a local audio input is too long for a sync request through the gateway (see SyncRule).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from saladcog import audio
from saladcog.client import RESEND_AFTER_SECONDS, Client, ClientError, PredictionError, SyncRule, write_files
from saladcog.webhooks import Receiver, serve, split_listen


def parse_inputs(pairs: list[str], schema: dict | None) -> dict[str, Any]:
    """`-i name=value` pairs → inputs, typed by the schema's Input properties when known."""
    properties = (schema or {}).get("components", {}).get("schemas", {}).get("Input", {}).get("properties", {})
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ClientError(f"-i {pair!r}: expected name=value or name=@file")
        if properties and name not in properties:
            raise ClientError(f"-i {name}: the model has no input {name!r} (inputs: {', '.join(properties)})")
        inputs[name] = _typed(name, value, properties.get(name, {}))
    return inputs


def _typed(name: str, value: str, prop: dict) -> Any:
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise ClientError(f"-i {name}=@{path}: no such file")
        return path
    kind = prop.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind in ("array", "object"):
            return json.loads(value)
    except ValueError as e:
        raise ClientError(f"-i {name}={value!r}: not a valid {kind}") from e
    return value


def _loopback(url: str) -> str | None:
    """The loopback host of a URL (`::1`, `127.0.0.1`), or None for any other host."""
    host = urlsplit(url).hostname or ""
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return "127.0.0.1" if host == "localhost" else None


@contextlib.contextmanager
def webhook_receiver(args: argparse.Namespace):
    """A receiver for async predictions: `--webhook-url` (public, reached from the server) served
    on `--listen`; for a loopback server, a receiver of its own on loopback. None otherwise."""
    token = args.webhook_token or None
    if args.webhook_url:
        host, port = split_listen(args.listen)
    else:
        host, port = _loopback(args.url), 0
        if host is None:
            yield None
            return
    with contextlib.ExitStack() as stack:
        db = args.receiver_db
        if not db:  # a store of this run only: goes away with it, whatever the outcome
            db = os.path.join(stack.enter_context(tempfile.TemporaryDirectory(prefix="saladcog-hooks-")), "webhooks.sqlite")
        rx = stack.enter_context(Receiver(db, host, port, token))
        yield (args.webhook_url or rx.url), rx.store


def _resend_after(args: argparse.Namespace) -> float | None:
    if args.resend_after < 0:
        raise ClientError(f"--resend-after must be 0 (never) or a positive number of seconds, got {args.resend_after:g}")
    return args.resend_after or None


def _audio_seconds(inputs: dict[str, Any]) -> tuple[float, int]:
    """Seconds and bytes of the local media files among the inputs (URLs count as 0)."""
    seconds = size = 0
    for value in inputs.values():
        if isinstance(value, Path):
            try:
                seconds += audio.probe(value).duration
            except audio.AudioError:
                continue  # not media (an image, a text file): let the server judge it
            size += value.stat().st_size
    return seconds, size


def _print_output(output: Any, dest: str | None) -> None:
    """File outputs (data URIs) are written to `dest` (default `output.<ext>`, as cog predict
    does); an output without files is printed, or written to `dest` as JSON."""
    saved = write_files(output, Path(dest or "output"))
    if dest and saved == output:
        Path(dest).write_text(json.dumps(output, indent=2) + "\n")
        print(f"wrote {dest}", file=sys.stderr)
        return
    print(saved if isinstance(saved, str) else json.dumps(saved, indent=2))


def cmd_predict(args: argparse.Namespace) -> int:
    with Client(args.url, args.api_key, timeout=args.timeout) as client:
        try:
            schema = client.schema()
        except ClientError:
            schema = None  # a server without the build's schema: values go as strings
        inputs = parse_inputs(args.input, schema)
        if args.stream:
            for chunk in client.stream_output(inputs, prediction_id=args.id):
                print(json.dumps(chunk), flush=True)
            return 0
        seconds, size = _audio_seconds(inputs)
        rule = SyncRule(real_time_factor=args.rtf)
        go_async = args.mode == "async" or (args.mode == "auto" and not rule.fits(seconds, size))
        if not go_async:
            prediction = client.predict(inputs, prediction_id=args.id)
        else:
            with webhook_receiver(args) as hooks:
                if hooks is None:
                    raise ClientError(
                        f"{seconds:.0f} s of audio (estimated {rule.estimate(seconds, size):.0f} s to run) is over"
                        f" the sync budget of {rule.budget:.0f} s: the gateway would answer 524 at 100 s. Pass"
                        " --webhook-url (a URL of this machine that the server reaches) and --listen, or --sync"
                    )
                url, store = hooks
                print(f"async: {seconds:.0f} s of audio; waiting for the webhook at {url}", file=sys.stderr)
                prediction = client.predict_async(
                    inputs, webhook=url, store=store, timeout=args.timeout, prediction_id=args.id,
                    resend_after=_resend_after(args),
                )
        _print_output(prediction.output, args.output)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from saladcog.batch import Batch, Webhooks, list_inputs

    items = list_inputs(Path(args.source))
    with Client(args.url, args.api_key, timeout=args.timeout) as client, webhook_receiver(args) as hooks:
        try:
            schema = client.schema()
        except ClientError:
            schema = None
        extra = parse_inputs(args.input, schema)
        batch = Batch(
            client,
            Path(args.out),
            inputs=extra,
            input_name=args.input_name,
            in_flight=args.jobs,
            rule=SyncRule(real_time_factor=args.rtf),
            webhooks=Webhooks(*hooks) if hooks else None,
            resend_after=_resend_after(args),
        )
        summary = batch.run(items, progress=not args.quiet)
    print(
        f"{summary.succeeded} transcribed, {summary.failed} failed, {summary.skipped} done before;"
        f" results in {args.out} (manifest.jsonl)",
        file=sys.stderr,
    )
    return 1 if summary.failed else 0


def cmd_receive(args: argparse.Namespace) -> int:
    token = args.webhook_token or None
    print(f"webhooks → {args.db} (bearer token {'required' if token else 'not required'})", file=sys.stderr)
    serve(args.db, args.listen, token)
    return 0


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("SALADCOG_URL", "http://[::1]:5000"),
                        help="server or Salad gateway URL (env SALADCOG_URL)")
    parser.add_argument("--api-key", default=os.environ.get("SALAD_API_KEY"),
                        help="sent as Salad-Api-Key (env SALAD_API_KEY)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for one prediction")
    parser.add_argument("--rtf", type=float, default=SyncRule.real_time_factor,
                        help="assumed seconds of processing per second of audio, for the sync/async choice")
    parser.add_argument("--webhook-url", help="URL of this machine's receiver, as the server reaches it")
    parser.add_argument("--listen", default="[::]:8080", help="where the receiver listens with --webhook-url")
    parser.add_argument("--receiver-db", help="sqlite file for received webhooks (default: a temporary one)")
    parser.add_argument("--webhook-token", default=os.environ.get("WEBHOOK_AUTH_TOKEN"),
                        help="bearer token the server's webhooks carry (env WEBHOOK_AUTH_TOKEN)")
    parser.add_argument("--resend-after", type=float, default=RESEND_AFTER_SECONDS, metavar="SECONDS",
                        help="async: send the prediction again (same id) after this long without its completed"
                             " webhook, in case the server stopped (0: never)")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE",
                        help="an input: name=value, or name=@file for a local file")


def _guarded(command):
    """Turn a client command's errors into one clear line: exit 1 if the prediction failed,
    2 if the request could not be made."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except PredictionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except (ClientError, audio.AudioError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def add_commands(sub) -> None:
    predict = sub.add_parser("predict", help="run one prediction on a server, like cog predict")
    _connection(predict)
    predict.add_argument("-o", "--output", help="write the output (or its files) here")
    predict.add_argument("--id", help="prediction id (default: a random one)")
    mode = predict.add_mutually_exclusive_group()
    mode.add_argument("--sync", dest="mode", action="store_const", const="sync", help="always wait on the request")
    mode.add_argument("--async", dest="mode", action="store_const", const="async", help="always use a webhook")
    mode.add_argument("--stream", action="store_true", help="print output chunks as server-sent events arrive")
    predict.set_defaults(func=_guarded(cmd_predict), mode="auto")

    batch = sub.add_parser("batch", help="transcribe a folder or a URL list, N requests in flight, resumable")
    batch.add_argument("source", help="folder of media files, or a text file with one URL per line")
    batch.add_argument("--out", required=True, help="folder for one JSON per input and manifest.jsonl")
    batch.add_argument("-j", "--jobs", type=int, default=4, help="requests in flight")
    batch.add_argument("--input-name", default="audio", help="the input each file or URL is given as")
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _connection(batch)
    batch.set_defaults(func=_guarded(cmd_batch))

    receive = sub.add_parser("receive", help="run the webhook receiver (stores events in sqlite)")
    receive.add_argument("--listen", default="[::]:8080", help="address:port to listen on")
    receive.add_argument("--db", default="webhooks.sqlite", help="sqlite file for the events")
    receive.add_argument("--webhook-token", default=os.environ.get("WEBHOOK_AUTH_TOKEN"),
                         help="require this bearer token (env WEBHOOK_AUTH_TOKEN)")
    receive.set_defaults(func=cmd_receive)


