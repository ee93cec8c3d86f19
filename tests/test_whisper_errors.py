"""Bad input: the prediction fails (or gets 422) with a message that names the problem, the
server stays READY, and the next good request succeeds."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import predict
from saladcog import audio
from saladcog.client import data_uri


def _text_file(tmp_path, clips):
    path = tmp_path / "notes.wav"
    path.write_text("This is a text file, not a recording.\n" * 20)
    return {"audio": data_uri(path)}


def _empty_file(tmp_path, clips):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return {"audio": data_uri(path)}


def _too_short(tmp_path, clips):
    path = tmp_path / "short.wav"
    audio.encode(clips[0].samples[:1600], 16000, path)  # 0.1 s
    return {"audio": data_uri(path)}


def _truncated_mp3(tmp_path, clips):
    whole = tmp_path / "whole.mp3"
    audio.encode(clips[0].samples, 16000, whole, "mp3")
    data = whole.read_bytes()
    path = tmp_path / "truncated.mp3"
    path.write_bytes(data[: len(data) // 2])
    return {"audio": data_uri(path)}


def _damaged_mp3(tmp_path, clips):
    """A sixth of the file, in its middle, overwritten with zeros: damaged, not cut short."""
    path = tmp_path / "damaged.mp3"
    audio.encode(clips[0].samples, 16000, path, "mp3")
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 3)
    path.write_bytes(bytes(data))
    return {"audio": data_uri(path)}


def _unknown_language(tmp_path, clips):
    return {"audio": data_uri(clips[0].wav), "language": "xx"}


def _translate_english_only(tmp_path, clips):
    return {"audio": data_uri(clips[0].wav), "task": "translate"}


CASES = {
    "text file": (_text_file, "not an audio or video file"),
    "empty file": (_empty_file, "is empty"),
    "0.1 s file": (_too_short, "too short"),
    "truncated mp3": (_truncated_mp3, "the uploaded audio is truncated"),
    "damaged mp3": (_damaged_mp3, "the uploaded audio is damaged inside"),
    "unknown language": (_unknown_language, "unknown language code 'xx'"),
    "translate on English-only": (_translate_english_only, "English-only"),
}


def assert_still_serving(server, clips):
    server.wait_ready(timeout=5)  # coglet frees the slot just after it answers
    body = predict(server.url("[::1]"), {"audio": data_uri(clips[1].wav)}).json()
    assert body["status"] == "succeeded", body.get("error")
    assert "ill" in body["output"]["text"] or "young man" in body["output"]["text"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_clearly_and_server_recovers(whisper_server, clips, tmp_path, case):
    make, message = CASES[case]
    response = predict(whisper_server.url("127.0.0.1"), make(tmp_path, clips))
    body = response.json()
    assert body["status"] == "failed", body
    assert message in body["error"], body["error"]
    assert_still_serving(whisper_server, clips)


def test_url_that_answers_404(whisper_server, clips, file_server):
    _, base = file_server
    response = predict(whisper_server.url("[::1]"), {"audio": f"{base}/missing/recording.mp3"})
    body = response.json()
    assert response.status_code in (200, 422) and body.get("status", "failed") == "failed", body
    error = str(body.get("error") or body.get("detail"))
    assert "404" in error and "recording.mp3" in error, error
    assert_still_serving(whisper_server, clips)


def test_url_input_is_fetched(whisper_server, clips, file_server):
    root, base = file_server
    (root / "clip.wav").write_bytes(clips[1].wav.read_bytes())
    body = predict(whisper_server.url("127.0.0.1"), {"audio": f"{base}/clip.wav"}).json()
    assert body["status"] == "succeeded", body.get("error")
    assert "young man" in body["output"]["text"]


def test_video_file_is_transcribed(whisper_server, clips, tmp_path):
    """A video container (MP4: a black H.264 picture and AAC speech) is read for its audio."""
    import av

    path = tmp_path / "talk.mp4"
    samples = clips[1].samples
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        for i in range(int(len(samples) / 16000 * 10)):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        pcm = (samples * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in sound.encode(frame):
            container.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                container.mux(packet)
    body = predict(whisper_server.url("[::1]"), {"audio": data_uri(path)}).json()
    assert body["status"] == "succeeded", body.get("error")
    assert "young man" in body["output"]["text"]
