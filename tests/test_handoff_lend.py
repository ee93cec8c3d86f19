"""handoff.lend: a file already on this machine read by the runner in place, once, and nothing else."""

from __future__ import annotations

import httpx
import pytest

from saladcog import handoff
from saladcog.inputs import InputError, fetched
from tests.conftest import normalize


def test_lent_file_is_read_in_place_once(tmp_path):
    original = tmp_path / "notes.wav"
    original.write_bytes(b"RIFF....")
    with handoff.lend(original, "notes.wav") as handle:
        assert str(tmp_path) not in handle and handle.endswith("/notes.wav")
        with fetched(handle, "audio") as sent:
            assert sent.path.read_bytes() == b"RIFF...."
            assert sent.name == "the uploaded file notes.wav"
        with pytest.raises(InputError, match="already read"):
            with fetched(handle, "audio"):
                pass
    assert original.exists()  # the lender's file: it decides when it goes
    token = handle[len(handoff.SCHEME):].split("/")[0]
    assert not (handoff.private_dir() / token).exists()


@pytest.mark.parametrize("handle", [
    "saladcog-upload:../../etc/passwd",
    "saladcog-upload:" + "A" * 43 + "/x.wav",  # well formed, never issued
    "saladcog-upload:" + "A" * 42 + "./x.wav",
    "saladcog-upload:/etc/passwd",
])
def test_anything_but_a_live_handle_is_refused(handle):
    with pytest.raises(InputError, match="malformed|gone"):
        with fetched(handle, "audio"):
            pass


def test_the_runner_transcribes_a_lent_file_through_the_cog_server(whisper_server, clips):
    clip = clips[0]
    with handoff.lend(clip.wav, "talk.wav") as handle:
        answer = httpx.post(f"{whisper_server.url()}/predictions", json={"input": {"audio": handle}}, timeout=300).json()
        assert answer["status"] == "succeeded", answer
        assert normalize(answer["output"]["text"]) == normalize(clip.text)
        again = httpx.post(f"{whisper_server.url()}/predictions", json={"input": {"audio": handle}}, timeout=300).json()
    assert again["status"] == "failed" and "already read" in again["error"]
