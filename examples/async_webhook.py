"""Transcribe a long recording asynchronously: the result comes back by webhook.

    SALADCOG_URL=https://xyz.salad.cloud SALAD_API_KEY=... WEBHOOK_AUTH_TOKEN=... \
        python examples/async_webhook.py talk.mp3 https://me.example.com/webhook 8080

The receiver listens on [::]:PORT and stores every event in hooks.sqlite before it answers, so
it must be reachable at the public URL (a reverse proxy or tunnel to PORT). The server must run
with the same WEBHOOK_AUTH_TOKEN (set it in the container group's environment).
"""

import os
import sys
from pathlib import Path

from saladcog.client import Client
from saladcog.webhooks import Receiver

audio, public_url, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with Receiver("hooks.sqlite", host="::", port=port, token=os.environ.get("WEBHOOK_AUTH_TOKEN")) as receiver:
    with Client(os.environ["SALADCOG_URL"], os.environ.get("SALAD_API_KEY")) as client:
        prediction = client.predict_async({"audio": audio}, webhook=public_url, store=receiver.store)
print(prediction.output["text"])
