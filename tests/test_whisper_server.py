"""The Whisper runner under the real Cog server, over 127.0.0.1 and [::1], with real speech."""

from __future__ import annotations

import re
import time

import httpx
import jiwer
import numpy as np
import pytest

from conftest import normalize, predict
from saladcog import audio
from saladcog.cli import data_uri
from saladcog.serve import CogServer

HOSTS = ["127.0.0.1", "[::1]"]


@pytest.mark.parametrize("host", HOSTS)
def test_librivox_word_error_rate(whisper_server, clips, concatenated, host):
    """The five clips are consecutive sentences of one chapter: transcribed as the recording
    they come from (with pauses between them), tiny.en gets them nearly all right."""
    path, _ = concatenated
    body = predict(whisper_server.url(host), {"audio": data_uri(path)}).json()
    assert body["status"] == "succeeded", body.get("error")
    reference = normalize(" ".join(clip.text for clip in clips))
    wer = jiwer.wer(reference, normalize(body["output"]["text"]))
    assert wer <= 0.03, (wer, body["output"]["text"])


@pytest.mark.parametrize("host", HOSTS)
def test_single_clip_output_fields(whisper_server, clips, host):
    clip = clips[1]
    body = predict(whisper_server.url(host), {"audio": data_uri(clip.wav)}).json()
    assert body["status"] == "succeeded", body.get("error")
    output = body["output"]
    assert output["detected_language"] == "en"
    assert 0.5 < output["language_probability"] <= 1.0
    assert output["duration"] == pytest.approx(len(clip.samples) / 16000, abs=0.05)
    assert output["transcription"] == output["text"]
    metrics = output["metrics"]
    assert metrics["audio_seconds"] == output["duration"]
    assert metrics["processing_seconds"] > 0
    assert metrics["real_time_factor"] == pytest.approx(
        metrics["processing_seconds"] / metrics["audio_seconds"], rel=0.01, abs=1e-4
    )
    assert jiwer.wer(clip.text, normalize(output["text"])) <= 0.3


def parse_cues(text: str, fmt: str) -> list[tuple[float, float, str]]:
    """Strictly parse SubRip or WebVTT; fail on anything out of shape."""
    marker = "," if fmt == "srt" else "."
    stamp = rf"(\d\d):(\d\d):(\d\d){re.escape(marker)}(\d\d\d)"
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n"), text[:40]
        text = text[len("WEBVTT\n\n") :]
    cues = []
    blocks = [b for b in text.strip("\n").split("\n\n")]
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines.pop(0) == str(number), block
        match = re.fullmatch(rf"{stamp} --> {stamp}", lines[0])
        assert match, lines[0]
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        start = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000
        end = h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert start <= end
        assert lines[1:] and all(line.strip() for line in lines[1:]), block
        cues.append((start, end, " ".join(lines[1:])))
    starts = [c[0] for c in cues]
    assert starts == sorted(starts)
    return cues


@pytest.fixture(scope="module")
def concatenated(clips, tmp_path_factory):
    """The clips one after another with 1.5 s of silence between them; their time spans."""
    gap = np.zeros(int(1.5 * 16000), dtype=np.float32)
    pieces, spans, t = [gap], [], 1.5
    for clip in clips:
        samples = clip.samples
        spans.append((t, t + len(samples) / 16000))
        pieces += [samples, gap]
        t += len(samples) / 16000 + 1.5
    path = tmp_path_factory.mktemp("concat") / "concatenated.mp3"
    audio.encode(np.concatenate(pieces), 16000, path, "mp3")
    return path, spans


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_line_up_with_clip_boundaries(whisper_server, clips, concatenated, fmt):
    path, spans = concatenated
    response = predict(whisper_server.url("[::1]"), {"audio": data_uri(path), "transcription": fmt})
    body = response.json()
    assert body["status"] == "succeeded", body.get("error")
    cues = parse_cues(body["output"]["transcription"], fmt)
    tolerance = 0.6
    words_per_clip = [[] for _ in spans]
    for start, end, text in cues:
        # A cue belongs to the clip it starts in, and must end before the next clip begins.
        owners = [i for i, (a, b) in enumerate(spans) if a - tolerance <= start < b]
        assert len(owners) == 1, (start, end, text, spans)
        following = spans[owners[0] + 1][0] if owners[0] + 1 < len(spans) else float("inf")
        assert end <= following, (start, end, text, spans)
        words_per_clip[owners[0]].append(text)
    for i, (clip, (a, _)) in enumerate(zip(clips, spans)):
        first_start = min(start for start, _, text in cues if text in words_per_clip[i])
        assert abs(first_start - a) <= tolerance, (i, first_start, a)
        assert jiwer.wer(clip.text, normalize(" ".join(words_per_clip[i]))) <= 0.15


def test_word_timestamps_and_segments(whisper_server, clips):
    clip = clips[0]
    body = predict(whisper_server.url("127.0.0.1"), {"audio": data_uri(clip.wav), "word_timestamps": True}).json()
    assert body["status"] == "succeeded", body.get("error")
    segments = body["output"]["segments"]
    words = [w for s in segments for w in s["words"]]
    assert normalize("".join(w["word"] for w in words)) == normalize(body["output"]["text"])
    for segment in segments:
        assert segment["start"] <= segment["words"][0]["start"] <= segment["words"][-1]["end"] <= segment["end"] + 0.01
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert words[-1]["end"] <= body["output"]["duration"] + 0.05


def test_batched_pipeline_matches_sequential_text(whisper_server, clips):
    clip = clips[0]
    url = whisper_server.url("[::1]")
    sequential = predict(url, {"audio": data_uri(clip.wav)}).json()["output"]["text"]
    batched = predict(url, {"audio": data_uri(clip.wav), "batch_size": 4}).json()
    assert batched["status"] == "succeeded", batched.get("error")
    assert jiwer.wer(normalize(sequential), normalize(batched["output"]["text"])) <= 0.1


def test_openapi_schema_is_served_and_validates(whisper_server, clips):
    schema = httpx.get(f"{whisper_server.url()}/openapi.json", timeout=10).json()
    properties = schema["components"]["schemas"]["Input"]["properties"]
    assert {"audio", "task", "language", "transcription", "batch_size"} <= set(properties)
    url = whisper_server.url("127.0.0.1")
    wrong_type = predict(url, {"audio": data_uri(clips[0].wav), "beam_size": "wide"})
    assert wrong_type.status_code == 422, wrong_type.text
    out_of_bounds = predict(url, {"audio": data_uri(clips[0].wav), "batch_size": 500})
    assert out_of_bounds.status_code == 422, out_of_bounds.text
    bad_choice = predict(url, {"audio": data_uri(clips[0].wav), "transcription": "docx"})
    assert bad_choice.status_code == 422, bad_choice.text


def test_health_is_starting_while_loading_then_ready():
    server = CogServer("whisper")
    with server:
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = server.health()
            if status and (not seen or seen[-1] != status):
                seen.append(status)
            if status == "READY":
                break
            time.sleep(0.02)
        assert seen[0] == "STARTING" and seen[-1] == "READY", seen
