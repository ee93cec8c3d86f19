"""The worker's settings, from the environment (docs/worker.md lists them with their defaults).

Where SQS and S3 are and who the worker is come from boto3's own chain (AWS_REGION,
AWS_ENDPOINT_URL[_SQS|_S3], AWS_ACCESS_KEY_ID, a profile or an instance role); the input limits
from saladcog.inputs (SALADCOG_MAX_INPUT_BYTES, SALADCOG_FETCH_TIMEOUT).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from saladcog import inputs


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the variable."""


def _number(name: str, default: float, kind=float, minimum: float = 0) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a {'whole ' if kind is int else ''}number") from None
    if value < minimum:
        raise SettingsError(f"{name}={text!r} must be at least {minimum}")
    return value


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set")
    return value


def _default_cog_url() -> str:
    # In relay mode the Cog server itself listens on COG_INTERNAL_PORT; else on PORT.
    port = os.environ.get("COG_INTERNAL_PORT") or os.environ.get("PORT") or "5000"
    return f"http://127.0.0.1:{port}"


@dataclasses.dataclass(frozen=True)
class Settings:
    queue_url: str
    results_url: str  # s3://bucket/prefix/
    cog_url: str = "http://127.0.0.1:5000"
    prefetch_files: int = 3  # messages held at once: downloading, waiting and running
    prefetch_bytes: int = 3_000_000_000  # bytes of prefetched inputs on disk
    fetch_threads: int = 2
    visibility_s: int = 30  # a crashed worker's messages are visible again after this
    poll_wait_s: int = 10  # SQS long poll (at most 20)
    stall_s: float = inputs.STALL_TIMEOUT_S  # a download that receives nothing this long fails
    predict_timeout_s: float = 3600.0
    max_instance_failures: int = 3  # in a row: then exit so that Salad replaces the node
    recover_s: float = 60.0  # how long a server that is not READY after a failure may take
    min_speed: float = 0.0  # audio seconds per second of processing, averaged; 0: no floor
    speed_window: int = 20  # predictions averaged for the floor
    stop_grace_s: float = 20.0  # after SIGTERM: how long the running prediction may finish
    limits: inputs.Limits = dataclasses.field(default_factory=inputs.Limits)
    work_dir: Path = dataclasses.field(default_factory=lambda: Path(tempfile.gettempdir()) / "saladcog-prefetch")

    @property
    def heartbeat_s(self) -> float:
        return max(1.0, self.visibility_s / 3)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            queue_url=_required("SALADCOG_QUEUE_URL"),
            results_url=_required("SALADCOG_RESULTS_URL"),
            cog_url=os.environ.get("SALADCOG_COG_URL") or _default_cog_url(),
            prefetch_files=int(_number("SALADCOG_PREFETCH_FILES", cls.prefetch_files, int, 1)),
            prefetch_bytes=int(_number("SALADCOG_PREFETCH_BYTES", cls.prefetch_bytes, int, 1)),
            fetch_threads=int(_number("SALADCOG_FETCH_THREADS", cls.fetch_threads, int, 1)),
            visibility_s=int(_number("SALADCOG_VISIBILITY_TIMEOUT", cls.visibility_s, int, 3)),
            poll_wait_s=int(min(20, _number("SALADCOG_POLL_WAIT", cls.poll_wait_s, int, 0))),
            stall_s=_number("SALADCOG_STALL_TIMEOUT", cls.stall_s, float, 0.1),
            predict_timeout_s=_number("SALADCOG_PREDICT_TIMEOUT", cls.predict_timeout_s, float, 1),
            max_instance_failures=int(_number("SALADCOG_MAX_INSTANCE_FAILURES", cls.max_instance_failures, int, 1)),
            recover_s=_number("SALADCOG_RECOVER_TIMEOUT", cls.recover_s),
            min_speed=_number("SALADCOG_MIN_SPEED", cls.min_speed),
            speed_window=int(_number("SALADCOG_SPEED_WINDOW", cls.speed_window, int, 1)),
            stop_grace_s=_number("SALADCOG_STOP_GRACE", cls.stop_grace_s),
            limits=inputs.Limits.from_env(),
            work_dir=Path(os.environ.get("SALADCOG_PREFETCH_DIR") or Path(tempfile.gettempdir()) / "saladcog-prefetch"),
        )
