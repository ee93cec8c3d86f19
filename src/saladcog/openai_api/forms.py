"""Read a multipart/form-data request as it arrives: text fields in memory (small, bounded),
the `file` part straight into a temporary file, so a 500 MB upload costs disk, not memory."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from saladcog.openai_api.errors import ApiError, bad_request

# Text fields are a model name, a language, a prompt: a few KiB at most.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 64
FILE_FIELD = "file"


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request is larger than this server accepts ({limit // 1_000_000} MB)",
                    code="request_too_large")


@dataclasses.dataclass
class Upload:
    path: Path
    filename: str  # the caller's file name, reduced to a safe base name
    size: int


@dataclasses.dataclass
class Form:
    fields: dict[str, list[str]]
    upload: Upload | None

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def remove_upload(self) -> None:
        if self.upload is not None:
            self.upload.path.unlink(missing_ok=True)
            self.upload = None


def safe_filename(name: str) -> str:
    """The base name of what the caller sent, with only characters safe in a URL and a log."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    return base[:100] or "upload"


class _Reader:
    """python-multipart callbacks that fill a Form and write the file part to `spool_dir`."""

    def __init__(self, spool_dir: Path):
        self.spool_dir = spool_dir
        self.fields: dict[str, list[str]] = {}
        self.upload: Upload | None = None
        self.file = None
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.value = bytearray()
        self.ended = False
        self.error: ApiError | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.headers, self.name, self.value = {}, "", bytearray()

    def header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        if self.name == FILE_FIELD:
            if self.upload is not None:
                raise MultipartParseError("more than one `file` part")
            filename = safe_filename(options.get(b"filename", b"upload").decode("utf-8", "replace"))
            fd, path = tempfile.mkstemp(prefix="upload-", dir=self.spool_dir)
            self.file = os.fdopen(fd, "wb")
            self.upload = Upload(Path(path), filename, 0)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.file is not None and self.name == FILE_FIELD:
            self.file.write(data[start:end])
            self.upload.size += end - start
            return
        self.value.extend(data[start:end])
        if len(self.value) > MAX_FIELD_BYTES:
            self.error = bad_request(f"form field {self.name!r} is longer than {MAX_FIELD_BYTES} bytes", self.name)
            raise MultipartParseError(self.error.message)

    def part_end(self) -> None:
        if self.name == FILE_FIELD and self.file is not None:
            self.file.close()
            self.file = None
            return
        if sum(len(v) for v in self.fields.values()) >= MAX_FIELDS:
            self.error = bad_request(f"more than {MAX_FIELDS} form fields")
            raise MultipartParseError(self.error.message)
        self.fields.setdefault(self.name, []).append(self.value.decode("utf-8", "replace"))

    def end(self) -> None:
        self.ended = True

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.upload is not None:
            self.upload.path.unlink(missing_ok=True)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_form(scope, receive, spool_dir: Path, max_bytes: int) -> Form:
    """The whole request body as a Form; the caller removes `form.upload` when done. Refuses
    (413) a body over `max_bytes`, by its Content-Length before reading or while reading."""
    content_type, options = parse_options_header(_header(scope, b"content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise bad_request("the request must be multipart/form-data (with the audio in a `file` part)")
    length = _header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise too_large(max_bytes)
    reader = _Reader(spool_dir)
    parser = MultipartParser(options[b"boundary"], reader.callbacks())
    received = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise bad_request("the client went away before the upload was complete")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > max_bytes:
                raise too_large(max_bytes)
            parser.write(chunk)
            if not message.get("more_body"):
                break
        parser.finalize()
        if not reader.ended:
            raise bad_request("the multipart body ended before its closing boundary")
    except MultipartParseError as e:
        reader.discard()
        raise reader.error or bad_request(f"the multipart body is malformed: {e}") from None
    except BaseException:
        reader.discard()
        raise
    return Form(reader.fields, reader.upload)
