"""Server-sent events in OpenAI's stream shape: `data: {json}` and a blank line, no event name."""

from __future__ import annotations

import json


def event(data: dict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
