"""What a queue message asks for, and the names of its results in storage.

A message body is one JSON object:

    {"input": "https://example.com/talk.mp3",          # or "s3://bucket/key"
     "inputs": {"language": "en", "transcription": "srt"},   # optional: the runner's inputs
     "result": "talks/talk.json"}                       # optional: the result's name

The result's name defaults to one derived from the input alone (`result_name`), under the
results prefix: `s3://bucket/key` -> `bucket/key.json`, `https://host/a/b.mp3` ->
`host/a/b.mp3.json`. Two messages for one input share one result; name one with `result` to
transcribe the same input twice with other options.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

from saladcog.batch import result_path

SUBTITLES = ("srt", "vtt")


class MessageError(ValueError):
    """A message that names no job; the message says what is wrong with it."""


def result_name(source: str) -> str:
    """The result's name for an input: its host (or bucket) and path, each segment made safe."""
    return result_path(PurePosixPath(), source).as_posix()


@dataclasses.dataclass(frozen=True)
class Job:
    source: str  # http(s) URL or s3://bucket/key
    inputs: dict[str, Any]
    result: str  # the result's name under the results prefix; ends with .json

    @classmethod
    def parse(cls, body: str) -> Job:
        try:
            value = json.loads(body)
        except ValueError as e:
            raise MessageError(f"the message body is not JSON ({e})") from None
        if not isinstance(value, dict):
            raise MessageError("the message body is not a JSON object")
        source = value.get("input")
        if not isinstance(source, str) or not source.startswith(("http://", "https://", "s3://")):
            raise MessageError('"input" must be an http(s) URL or an s3://bucket/key')
        extra = value.get("inputs") or {}
        if not isinstance(extra, dict) or "audio" in extra:
            raise MessageError('"inputs" must be an object of runner inputs other than "audio"')
        result = value.get("result") or result_name(source)
        if not isinstance(result, str) or not result.endswith(".json") or ".." in result.split("/"):
            raise MessageError('"result" must be a relative name ending with .json')
        return cls(source=source, inputs=extra, result=result.lstrip("/"))

    def body(self) -> str:
        value: dict[str, Any] = {"input": self.source}
        if self.inputs:
            value["inputs"] = self.inputs
        if self.result != result_name(self.source):
            value["result"] = self.result
        return json.dumps(value, ensure_ascii=False)

    @property
    def prediction_id(self) -> str:
        """The Cog prediction id: the same for every delivery of this job, so that a redelivered
        message joins a prediction of it still running on this server instead of starting one."""
        return hashlib.sha256(self.result.encode()).hexdigest()[:32]

    @property
    def subtitles(self) -> str | None:
        """The subtitle file's name beside the result, when the job asks for subtitles."""
        kind = self.inputs.get("transcription")
        return self.result[: -len(".json")] + f".{kind}" if kind in SUBTITLES else None

    @property
    def name(self) -> str:
        """How messages name the input: its last path segment."""
        return PurePosixPath(self.source.split("?", 1)[0]).name or "input"
