"""saladcog.storage against a real S3 API on loopback (moto's server mode), through boto3."""

from __future__ import annotations

import os

import pytest

from saladcog.storage import Location, ObjectTooLarge, Storage, StorageError


@pytest.fixture()
def store(aws):
    client = aws.client("s3")
    client.create_bucket(Bucket="results")
    yield Storage.from_url("s3://results/run-1/", client=client)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="results"):
        for item in page.get("Contents", []):
            client.delete_object(Bucket="results", Key=item["Key"])
    client.delete_bucket(Bucket="results")


def test_location_round_trip():
    assert str(Location.parse("s3://b/a/b.json")) == "s3://b/a/b.json"
    with pytest.raises(ValueError):
        Location.parse("https://b/a")


def test_json_put_get_exists_list(store):
    assert not store.exists("a.json")
    assert store.put_json("a.json", {"text": "héllo"}) == "s3://results/run-1/a.json"
    assert store.exists("a.json")
    assert store.get_json("a.json") == {"text": "héllo"}
    store.put_bytes("sub/b.txt", b"x")
    assert sorted(store.names()) == ["a.json", "sub/b.txt"]
    assert list(store.names("sub/")) == ["sub/b.txt"]
    store.delete("a.json")
    assert not store.exists("a.json")


def test_large_file_goes_up_in_parts_and_downloads_within_a_cap(store, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))  # over PART_BYTES: a multipart upload
    store.put_file("big.bin", big)
    assert store.size("big.bin") == 20 << 20
    copy = tmp_path / "copy.bin"
    assert store.download("big.bin", copy, max_bytes=32 << 20) == 20 << 20
    assert copy.read_bytes() == big.read_bytes()
    with pytest.raises(ObjectTooLarge):
        store.download("big.bin", tmp_path / "capped.bin", max_bytes=1 << 20)
    assert not (tmp_path / "capped.bin").exists()


def test_missing_object_names_itself(store):
    with pytest.raises(StorageError, match="s3://results/run-1/nope.json"):
        store.get_json("nope.json")


def test_presigned_urls_work_without_credentials(store):
    import httpx

    put = store.presigned_put("up.bin")
    assert httpx.put(put, content=b"payload", timeout=10).status_code == 200
    assert httpx.get(store.presigned_get("up.bin"), timeout=10).content == b"payload"


def test_upload_sends_a_file_once_and_again_when_it_changed(store, tmp_path):
    talk = tmp_path / "talk.wav"
    talk.write_bytes(b"RIFF" + bytes(100))
    assert store.upload("in/talk.wav", talk) == "s3://results/run-1/in/talk.wav"
    first = store.client.head_object(Bucket="results", Key="run-1/in/talk.wav")
    assert first["ContentType"] == "audio/x-wav"
    store.put_bytes("in/talk.wav", b"X" * 104)  # what is stored now differs, at the same size
    store.upload("in/talk.wav", talk)  # same size: nothing sent
    assert store.get_bytes("in/talk.wav", 1000) == b"X" * 104
    talk.write_bytes(b"RIFF" + bytes(200))
    store.upload("in/talk.wav", talk)
    assert store.size("in/talk.wav") == 204
