"""`saladcog` command line: serve a runner under the real Cog server, and the README demo.

    saladcog serve whisper --port 5000     # foreground, on [::] (dual stack), until Ctrl-C
    saladcog demo                          # serve, transcribe a bundled clip over [::1], stop
    saladcog salad create examples/salad/whisper-large-v3.json --organization O --project P
    saladcog worker submit|status|collect|run   # the SQS/S3 batch node (docs/worker.md)
    saladcog queue run transcripts talks/ --out results/ --storage s3://bucket/in/ --organization O --project P
"""

from __future__ import annotations

import argparse
import signal
import sys

from saladcog import client_cli, salad
from saladcog.queue import cli as queue_cli
from saladcog.client import Client
from saladcog.serve import REPO_ROOT, RUNNERS, CogServer, ServerError
from saladcog.worker import cli as worker_cli

DEMO_CLIP = REPO_ROOT / "tests" / "data" / "speech" / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"


def cmd_serve(args: argparse.Namespace) -> int:
    server = CogServer(args.runner, host=args.host, port=args.port, front_door=args.front_door)
    server.start()
    print(f"serving {server.runner} on {args.host}:{server.port} (log: {server.log_path})", file=sys.stderr)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.wait_ready(timeout=args.ready_timeout)
        print(f"READY: POST {server.url()}/predictions", file=sys.stderr)
        if args.front_door == "openai":
            print(f"OpenAI API: base_url={server.url()}/v1", file=sys.stderr)
        return server.process.wait()
    except ServerError as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()


def cmd_demo(args: argparse.Namespace) -> int:
    with CogServer("whisper", front_door="auto") as server:
        print(
            f"starting the Cog server (coglet) for {server.runner} through ipv6_entrypoint.sh "
            f"on [::]:{server.port} …",
            file=sys.stderr,
        )
        server.wait_ready(timeout=args.ready_timeout)
        url = server.url("[::1]")
        print(f"READY; transcribing {DEMO_CLIP.name} over {url}", file=sys.stderr)
        with Client(url) as client:
            output = client.predict({"audio": DEMO_CLIP}).output
    print(output["text"])
    metrics = output["metrics"]
    print(
        f"[{output['detected_language']}, {output['duration']:.1f} s of audio in "
        f"{metrics['processing_seconds']:.2f} s, model {metrics['model']} on {metrics['device']}]",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saladcog", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve a runner under the real Cog HTTP server")
    serve.add_argument("runner", help=f"{', '.join(RUNNERS)} or path/to/predict.py:Class")
    serve.add_argument("--host", default="[::]", help="IP literal to bind; [::] is dual stack")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--ready-timeout", type=float, default=600.0)
    serve.add_argument(
        "--front-door",
        choices=["auto", "bind", "relay", "openai"],
        help="start through ipv6_entrypoint.sh in this mode, as the images do on Salad",
    )
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="serve Whisper, transcribe a bundled clip over IPv6")
    demo.add_argument("--ready-timeout", type=float, default=300.0)
    demo.set_defaults(func=cmd_demo)

    salad.add_subcommand(sub)
    client_cli.add_commands(sub)  # predict, batch, receive
    worker_cli.add_subcommand(sub)  # worker run, submit, status, collect
    queue_cli.add_subcommand(sub)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
