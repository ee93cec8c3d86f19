"""Spool handles: a file on this machine lent to the runner in place, and nothing else."""

from __future__ import annotations

import shutil

import httpx
import pytest

from saladcog import spool
from saladcog.inputs import InputError, SentFile, fetched
from tests.conftest import normalize


def test_lent_file_is_read_in_place_and_gone_afterwards(tmp_path):
    original = tmp_path / "notes.wav"
    original.write_bytes(b"RIFF....")
    with spool.lend(original, "notes.wav") as handle:
        assert str(tmp_path) not in handle and "notes.wav" in handle
        with fetched(SentFile(handle), "audio") as sent:
            assert sent.path.read_bytes() == b"RIFF...."
            assert sent.name == "the uploaded file notes.wav"
            path = sent.path
        assert path.exists()  # the lender, not the reader, ends its life
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(InputError, match="the uploaded file notes.wav is no longer available"):
        with fetched(SentFile(handle), "audio"):
            pass


@pytest.mark.parametrize("handle", [
    "saladcog-spool:../../etc/passwd",
    "saladcog-spool:" + "A" * 43 + "/x.wav",  # well formed, never issued
    "saladcog-spool:" + "A" * 42 + "./x.wav",
    "saladcog-spool:/etc/passwd",
])
def test_anything_but_a_live_handle_is_refused(handle):
    assert spool.resolve(handle) is None
    with pytest.raises(InputError, match="no longer available"):
        with fetched(SentFile(handle), "audio"):
            pass


def test_a_symlink_in_the_spool_is_not_followed(tmp_path):
    with spool.lend(tmp_path.joinpath("a.wav").open("wb").name, "a.wav") as handle:
        found, _ = spool.resolve(handle)
        found.unlink()
        found.symlink_to("/etc/hostname")
        assert spool.resolve(handle) is None


def test_the_runner_transcribes_a_lent_file_through_the_cog_server(whisper_server, clips, tmp_path):
    clip = clips[0]
    copy = tmp_path / "talk.wav"
    shutil.copy(clip.wav, copy)
    with spool.lend(copy, "talk.wav") as handle:
        answer = httpx.post(f"{whisper_server.url()}/predictions", json={"input": {"audio": handle}}, timeout=300).json()
    assert answer["status"] == "succeeded", answer
    assert normalize(answer["output"]["text"]) == normalize(clip.text)
    after = httpx.post(f"{whisper_server.url()}/predictions", json={"input": {"audio": handle}}, timeout=300).json()
    assert after["status"] == "failed" and "the uploaded file talk.wav is no longer available" in after["error"]
