"""Transcribe every media file in a folder through a Salad gateway, 4 requests in flight.

    SALADCOG_URL=https://xyz.salad.cloud SALAD_API_KEY=... python examples/transcribe_folder.py recordings/ transcripts/

Rerun the same command after an interruption: files already transcribed are skipped.
Same as: saladcog batch recordings/ --out transcripts/ -j 4
"""

import os
import sys
from pathlib import Path

from saladcog.batch import Batch, list_inputs
from saladcog.client import Client

source, out = Path(sys.argv[1]), Path(sys.argv[2])
with Client(os.environ["SALADCOG_URL"], os.environ.get("SALAD_API_KEY")) as client:
    summary = Batch(client, out, inputs={"language": "en"}, in_flight=4).run(list_inputs(source))
print(f"{summary.succeeded} transcribed, {summary.failed} failed, {summary.skipped} already done")
