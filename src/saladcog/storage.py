"""S3-compatible object storage for inputs, results and large outputs: AWS S3, Cloudflare R2,
MinIO or anything else that speaks S3's API, through boto3.

    store = Storage.from_url("s3://transcripts/run-1/")
    store.put_json("talk.json", result)
    store.exists("talk.json")

Where the service is and who we are come from boto3's own configuration chain, exactly as for
any AWS tool: `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`) for a service other than AWS,
`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` or a profile or an instance role for credentials,
`AWS_REGION` / `AWS_DEFAULT_REGION` (R2 takes `auto`). Nothing here reads its own variables.
"""

from __future__ import annotations

import dataclasses
import json
import mimetypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import boto3.exceptions
import boto3.s3.transfer
import botocore.config
import botocore.exceptions

# Large objects go up in parts of this size, several at once (boto3's managed transfer).
PART_BYTES = 16 << 20
CHUNK_BYTES = 1 << 20


class StorageError(RuntimeError):
    """A storage request that failed; the message names the object and S3's reason."""


class ObjectTooLarge(StorageError):
    """An object larger than the caller allows."""


@dataclasses.dataclass(frozen=True)
class Location:
    """One object: `s3://bucket/key`."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"{url!r} is not an s3://bucket/key URL")
        return cls(parts.netloc, parts.path.lstrip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def s3_client(**overrides: Any):
    """A boto3 S3 client configured from the environment, with retries for throttling and
    dropped connections (botocore's standard mode: 3 attempts, backoff)."""
    config = botocore.config.Config(retries={"mode": "standard", "max_attempts": 5}, **overrides)
    return boto3.session.Session().client("s3", config=config)


def _missing(error: botocore.exceptions.ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


class Storage:
    """The objects under one prefix of one bucket; names are relative to the prefix."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        if not bucket:
            raise ValueError("a bucket name is required")
        self.bucket = bucket
        self.prefix = prefix
        self.client = client or s3_client()

    @classmethod
    def from_url(cls, url: str, client=None) -> Storage:
        """`s3://bucket` or `s3://bucket/prefix/` (a prefix ends with "/" or is used as is)."""
        location = Location.parse(url if "://" in url else f"s3://{url}")
        return cls(location.bucket, location.key, client)

    def location(self, name: str) -> Location:
        return Location(self.bucket, self.prefix + name)

    def url(self, name: str) -> str:
        return str(self.location(name))

    def _call(self, what: str, name: str, method, **kwargs):
        try:
            return method(Bucket=self.bucket, Key=self.prefix + name, **kwargs)
        except botocore.exceptions.ClientError as e:
            reason = e.response.get("Error", {}).get("Message") or e.response.get("Error", {}).get("Code")
            raise StorageError(f"{what} {self.url(name)} failed: {reason}") from e
        except botocore.exceptions.BotoCoreError as e:
            raise StorageError(f"{what} {self.url(name)} failed: {e}") from e

    def exists(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + name)
            return True
        except botocore.exceptions.ClientError as e:
            if _missing(e):
                return False
            raise StorageError(f"checking {self.url(name)} failed: {e}") from e

    def size(self, name: str) -> int:
        return self._call("reading", name, self.client.head_object)["ContentLength"]

    def put_bytes(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self._call("writing", name, self.client.put_object, Body=data, ContentType=content_type)
        return self.url(name)

    def put_json(self, name: str, value: Any) -> str:
        return self.put_bytes(name, json.dumps(value, ensure_ascii=False).encode(), "application/json")

    def put_file(self, name: str, path: str | os.PathLike, content_type: str = "application/octet-stream") -> str:
        """Upload a file of any size (in parts above PART_BYTES); one object appears whole or not at all."""
        transfer = boto3.s3.transfer.TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)
        try:
            self.client.upload_file(str(path), self.bucket, self.prefix + name,
                                    ExtraArgs={"ContentType": content_type}, Config=transfer)
        except (boto3.exceptions.S3UploadFailedError, botocore.exceptions.BotoCoreError,
                botocore.exceptions.ClientError) as e:
            raise StorageError(f"writing {self.url(name)} failed: {e}") from e
        return self.url(name)

    def upload(self, name: str, path: str | os.PathLike) -> str:
        """`put_file` unless an object of the file's size is there already (a resumed submission
        sends nothing twice); the content type is guessed from the name."""
        try:
            stored = self.client.head_object(Bucket=self.bucket, Key=self.prefix + name)["ContentLength"]
        except botocore.exceptions.ClientError as e:
            if not _missing(e):
                raise StorageError(f"checking {self.url(name)} failed: {e}") from e
            stored = None
        if stored != Path(path).stat().st_size:
            self.put_file(name, path, mimetypes.guess_type(name)[0] or "application/octet-stream")
        return self.url(name)

    def get_bytes(self, name: str, max_bytes: int) -> bytes:
        body = self._call("reading", name, self.client.get_object)["Body"]
        try:
            data = body.read(max_bytes + 1)
        finally:
            body.close()
        if len(data) > max_bytes:
            raise ObjectTooLarge(f"{self.url(name)} is larger than {max_bytes} bytes")
        return data

    def get_json(self, name: str, max_bytes: int = 64 << 20) -> Any:
        return json.loads(self.get_bytes(name, max_bytes))

    def download(self, name: str, path: str | os.PathLike, max_bytes: int) -> int:
        """Stream an object to `path` (removed again on any failure); returns its size."""
        response = self._call("reading", name, self.client.get_object)
        if response.get("ContentLength", 0) > max_bytes:
            response["Body"].close()
            raise ObjectTooLarge(f"{self.url(name)} is larger than {max_bytes} bytes")
        size = 0
        body = response["Body"]
        try:
            with Path(path).open("wb") as out:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ObjectTooLarge(f"{self.url(name)} is larger than {max_bytes} bytes")
                    out.write(chunk)
        except BaseException:
            Path(path).unlink(missing_ok=True)
            raise
        finally:
            body.close()
        return size

    def delete(self, name: str) -> None:
        self._call("deleting", name, self.client.delete_object)

    def names(self, under: str = "") -> Iterator[str]:
        """Every object name under `under` (relative to the prefix), in S3's order."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + under)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix):]
        except botocore.exceptions.ClientError as e:
            raise StorageError(f"listing {self.url(under)} failed: {e}") from e

    def presigned_get(self, name: str, expires_s: int = 3600) -> str:
        """An https URL anyone can GET the object from until it expires."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.prefix + name}, ExpiresIn=expires_s)

    def presigned_put(self, name: str, expires_s: int = 3600) -> str:
        """An https URL anyone can PUT the object's bytes to until it expires."""
        return self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self.prefix + name}, ExpiresIn=expires_s)
