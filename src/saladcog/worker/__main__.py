"""`python -m saladcog.worker`: the worker beside the Cog server, configured from the environment
(docs/worker.md). SIGTERM or SIGINT stop it: no new messages, the running prediction gets
SALADCOG_STOP_GRACE seconds, everything else goes back to the queue."""

from __future__ import annotations

import logging
import signal
import sys

from saladcog.inputs import checked_transport
from saladcog.worker.node import Worker
from saladcog.worker.settings import Settings, SettingsError


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s saladcog-worker %(levelname)s %(message)s")
    # A line per HTTP request and per credential lookup would bury the worker's own.
    for noisy in ("httpx", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"saladcog worker: {e}", file=sys.stderr)
        return 2
    # Inputs named in messages are fetched under the same address rules as a runner's URL inputs.
    worker = Worker(settings, transport=lambda deadline: checked_transport(deadline, settings.limits))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: worker.stop(signal.Signals(number).name))
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
