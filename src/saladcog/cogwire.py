"""Cog's wire format, as coglet 0.23.1 speaks it: shared by the client, the front door and the
queue route, so that each reads Cog's answers the same way.

- prediction states, and which of them end a prediction;
- the text of an error answer (422 validation details, or `error`);
- the runner's own message inside coglet's wrapping of a failed prediction's `error`;
- data URIs, the way Cog carries files in inputs and outputs.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
from pathlib import Path
from typing import Any

STARTING, PROCESSING = "starting", "processing"
SUCCEEDED, FAILED, CANCELED = "succeeded", "failed", "canceled"
# A prediction in one of these states is over: coglet forgets it (GET /predictions/{id} is 405 in
# coglet 0.23.1, and a cancel answers 404).
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELED})
# What `webhook_events_filter` may name; coglet retries only the `completed` webhook.
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")

# coglet 0.23.1 wraps an error raised in run() as "Prediction failed: Prediction failed: <Type>: ".
_COGLET_WRAPPING = re.compile(r"^(?:Prediction failed: )*(?:\w+(?:Error|Exception): )?")


def runner_message(error: str) -> str:
    """The runner's own words from a failed prediction's `error`, without coglet's wrapping."""
    return _COGLET_WRAPPING.sub("", error.strip()) or error


def error_text(content: bytes) -> str:
    """What a Cog server's error answer says: the 422 validation details, or its `error`."""
    text = content.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return text[:500]
    if isinstance(body, dict) and isinstance(body.get("detail"), list):  # 422 from input validation
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[2:]) or 'input'}: {d.get('msg')}" for d in body["detail"]
        )
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return text[:500]


def data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """`data:audio/wav;base64,...` → ("audio/wav", bytes); ValueError when it is not one."""
    header, sep, payload = uri.partition(",")
    if not uri.startswith("data:") or not sep:
        raise ValueError(f"not a data URI: {uri[:40]}…")
    mime = header[5:].split(";")[0] or "application/octet-stream"
    try:
        data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
    except binascii.Error as e:
        raise ValueError(f"data URI with bad base64: {e}") from e
    return mime, data


def data_uris(output: Any) -> list[str]:
    """Every data-URI file in a prediction's output (Cog's file outputs), in order."""
    if isinstance(output, str):
        return [output] if output.startswith("data:") else []
    if isinstance(output, list):
        return [uri for value in output for uri in data_uris(value)]
    if isinstance(output, dict):
        return [uri for value in output.values() for uri in data_uris(value)]
    return []
