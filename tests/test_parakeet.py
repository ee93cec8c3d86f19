"""The Parakeet runner end to end through the real Cog server, on a tiny random Parakeet TDT in
the exact layout and signatures of the real ONNX exports (tests/tiny_parakeet.py).

Decoding is checked against a plain greedy TDT decode written here from the paper (Xu et al.,
"Efficient Sequence Transduction by Jointly Predicting Tokens and Durations", 2023, Algorithm 2),
run with onnxruntime on the same export, independent of onnx-asr and of saladcog's engine."""

from __future__ import annotations

import importlib.resources
import shutil

import numpy as np
import onnxruntime
import pytest

from conftest import SPEECH, predict
from saladcog import audio
from saladcog.asr import parakeet
from saladcog.asr.clips import clips as clips_of
from saladcog.asr.clips import without_silence
from saladcog.client import data_uri
from saladcog.serve import CogServer
from tiny_parakeet import DURATIONS, make_tiny_parakeet

SR = 16000
FRAME_SECONDS = 0.08  # 10 ms features, 8x subsampling
MAX_SYMBOLS_PER_FRAME = 10  # NeMo's greedy default for the Parakeet TDT models


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_parakeet(tmp_path_factory.mktemp("models") / "parakeet-tdt-0.6b-v2")


@pytest.fixture(scope="module")
def parakeet_server(model_dir):
    with CogServer("parakeet", env={"SALADCOG_MODEL_DIR": str(model_dir)}) as server:
        server.wait_ready(timeout=180)
        yield server


def reference_decode(model_dir, samples: np.ndarray) -> tuple[list[int], list[int], str]:
    """Greedy TDT: token ids, the frame each was emitted at, and the text."""
    features_model = importlib.resources.files("onnx_asr.preprocessors") / "data" / "nemo128.onnx"
    features, features_lens = onnxruntime.InferenceSession(str(features_model)).run(
        None, {"waveforms": samples[None].astype(np.float32), "waveforms_lens": np.array([len(samples)])})
    encoder = onnxruntime.InferenceSession(str(model_dir / "encoder-model.onnx"))
    frames, frames_len = encoder.run(None, {"audio_signal": features, "length": features_lens})
    decoder_joint = onnxruntime.InferenceSession(str(model_dir / "decoder_joint-model.onnx"))
    pieces = [line.rsplit(" ", 1)[0] for line in (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()]
    blank = pieces.index("<blk>")
    states = [np.zeros((2, 1, 640), np.float32), np.zeros((2, 1, 640), np.float32)]
    last, tokens, emitted_at = blank, [], []
    t, symbols = 0, 0
    while t < int(frames_len[0]):
        logits, _, state_1, state_2 = decoder_joint.run(None, {
            "encoder_outputs": frames[:, :, t : t + 1], "targets": np.array([[last]], np.int32),
            "target_length": np.array([1], np.int32), "input_states_1": states[0], "input_states_2": states[1]})
        logits = logits.reshape(-1)
        token = int(np.argmax(logits[: blank + 1]))
        duration = DURATIONS[int(np.argmax(logits[blank + 1 :]))]
        if token != blank:
            tokens.append(token)
            emitted_at.append(t)
            last, states, symbols = token, [state_1, state_2], symbols + 1
        # A blank always moves on (a zero duration is not allowed with it); so does a frame that
        # has given its maximum number of symbols.
        if duration == 0 and (token == blank or symbols == MAX_SYMBOLS_PER_FRAME):
            duration = 1
        if duration > 0:
            t, symbols = t + duration, 0
    text = "".join(pieces[i] for i in tokens).replace("\u2581", " ").strip()
    return tokens, emitted_at, text


def reference_transcript(model_dir, pieces) -> tuple[list[int], list[float], str]:
    """Token ids, word start times and text of (offset, samples) pieces decoded one by one."""
    pieces_text = [line.rsplit(" ", 1)[0] for line in (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()]
    all_tokens, starts, texts = [], [], []
    for offset, samples in pieces:
        tokens, emitted_at, text = reference_decode(model_dir, samples)
        all_tokens += tokens
        starts += [round(offset + emitted_at[i] * FRAME_SECONDS, 3) for i, token in enumerate(tokens)
                   if i == 0 or pieces_text[token].startswith("\u2581")]
        texts.append(text)
    return all_tokens, starts, " ".join(t for t in texts if t)


def words_of(output):
    return [w for s in output["segments"] for w in s["words"]]


def check_transcript(output, expected) -> None:
    tokens, starts, text = expected
    assert [t for s in output["segments"] for t in s["tokens"]] == tokens
    assert output["text"] == text
    words = words_of(output)
    # Each word starts at the frame of its first token, and ends before the next word starts.
    assert [w["start"] for w in words] == starts
    for word, following in zip(words, words[1:]):
        assert word["start"] <= word["end"] <= following["start"]


@pytest.mark.parametrize("name", ["goforward.wav", "librivox/sense_and_sensibility_01_austen_64kb-0870.wav"])
def test_decoding_matches_the_reference_greedy_tdt(parakeet_server, model_dir, name):
    path = SPEECH / name
    samples = audio.decode(path, SR)
    expected = reference_transcript(model_dir, [(0.0, samples)])
    assert len(expected[0]) >= 5  # the tiny model says something, so the comparison can fail
    body = predict(parakeet_server.url("[::1]"),
                   {"audio": data_uri(path), "word_timestamps": True, "transcription": "srt"}).json()
    assert body["status"] == "succeeded", body.get("error")
    output = body["output"]
    check_transcript(output, expected)
    assert output["transcription"].startswith("1\n00:00:00,")
    assert output["detected_language"] == "en"
    assert output["duration"] == pytest.approx(len(samples) / SR, abs=0.05)
    assert output["metrics"]["model"] == "parakeet-tdt-0.6b-v2" and output["metrics"]["device"] == "cpu"


@pytest.fixture(scope="module")
def long_recording(clips, tmp_path_factory):
    """About 3 minutes as FLAC: the LibriVox clips, each followed by 3 s of silence (dropped),
    then 100 s of the clips back to back (cut at a quiet point into pieces of at most 60 s)."""
    gap = np.zeros(3 * SR, dtype=np.float32)
    parts = [part for clip in clips for part in (clip.samples, gap)]
    dense = np.concatenate([c.samples for c in clips] * 3)[: 100 * SR]
    path = tmp_path_factory.mktemp("long") / "long.flac"
    audio.encode(np.concatenate([*parts, dense, gap]), SR, path, "flac")
    return path


def test_long_audio_is_decoded_piece_by_piece_and_batched(parakeet_server, model_dir, long_recording):
    outputs = []
    for batch_size in (1, 8):
        body = predict(parakeet_server.url("127.0.0.1"),
                       {"audio": data_uri(long_recording), "word_timestamps": True, "batch_size": batch_size}).json()
        assert body["status"] == "succeeded", body.get("error")
        outputs.append(body["output"])
    # Pieces padded into one batch decode exactly as one at a time.
    assert outputs[0]["segments"] == outputs[1]["segments"]
    # The pieces: the file cut as saladcog cuts it (clips.py, tested on its own), silence out.
    samples = audio.decode(long_recording, SR)
    pieces = list(without_silence(clips_of([samples], SR, parakeet.PIECE_SECONDS), SR))
    assert len(pieces) >= 7 and max(len(p) for _, p in pieces) <= parakeet.PIECE_SECONDS * SR
    check_transcript(outputs[0], reference_transcript(model_dir, pieces))


def test_the_model_directory_names_the_languages(model_dir, tmp_path):
    v3 = shutil.copytree(model_dir, tmp_path / "parakeet-tdt-0.6b-v3")
    model = parakeet.load(v3)
    clip = SPEECH / "goforward.wav"
    assert parakeet.transcribe(model, clip, language="fr").language == "fr"
    assert parakeet.transcribe(model, clip).language == ""  # v3 does not say which it heard
    with pytest.raises(parakeet.RequestError, match="does not know language 'ja'.*bg, cs"):
        parakeet.transcribe(model, clip, language="ja")
    with pytest.raises(ValueError, match="must be one of parakeet-tdt-0.6b-v2, parakeet-tdt-0.6b-v3"):
        parakeet.load(shutil.copytree(model_dir, tmp_path / "my-model"))


def _truncated_mp3(tmp_path, clips):
    whole = tmp_path / "whole.mp3"
    audio.encode(clips[0].samples, SR, whole, "mp3")
    path = tmp_path / "truncated.mp3"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return {"audio": data_uri(path)}


def _text_file(tmp_path, clips):
    path = tmp_path / "notes.wav"
    path.write_text("This is a text file, not a recording.\n" * 20)
    return {"audio": data_uri(path)}


BAD_INPUTS = {
    "text file": (_text_file, "not an audio or video file"),
    "truncated mp3": (_truncated_mp3, "the uploaded audio is truncated"),
    "a path on the server": (lambda tmp_path, clips: {"audio": "/etc/passwd"}, "must be sent as a data URI or an http(s) URL"),
    "French on v2": (lambda tmp_path, clips: {"audio": data_uri(clips[0].wav), "language": "fr"}, "English-only"),
    "translate": (lambda tmp_path, clips: {"audio": data_uri(clips[0].wav), "task": "translate"}, "only transcribes (no translation)"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_clearly_and_the_server_recovers(parakeet_server, clips, tmp_path, case):
    make, message = BAD_INPUTS[case]
    body = predict(parakeet_server.url("127.0.0.1"), make(tmp_path, clips)).json()
    assert body["status"] == "failed", body
    assert message in body["error"], body["error"]
    parakeet_server.wait_ready(timeout=5)
    body = predict(parakeet_server.url("[::1]"), {"audio": data_uri(clips[1].wav)}).json()
    assert body["status"] == "succeeded", body.get("error")


def test_openai_door_answers_parakeet_and_whisper_1_with_the_images_model(parakeet_server, model_dir):
    """The OpenAI front door (COG_IPV6_MODE=openai) before the Parakeet runner, called with the
    official SDK: both model names give the Cog API's transcript; translation is refused."""
    import openai

    path = SPEECH / "goforward.wav"
    cog = predict(parakeet_server.url("[::1]"), {"audio": data_uri(path), "word_timestamps": True}).json()["output"]
    with CogServer("parakeet", front_door="openai", env={"SALADCOG_MODEL_DIR": str(model_dir)}) as server:
        server.wait_ready(timeout=180)
        with openai.OpenAI(base_url=f"{server.url('[::1]')}/v1", api_key="sk-any", max_retries=0) as client:
            for model in ("parakeet", "whisper-1"):
                with path.open("rb") as f:
                    answer = client.audio.transcriptions.create(
                        model=model, file=f, response_format="verbose_json", timestamp_granularities=["word"])
                assert answer.text == cog["text"]
                assert [w.start for w in answer.words] == [w["start"] for w in words_of(cog)]
            with path.open("rb") as f, pytest.raises(openai.APIStatusError) as refused:
                client.audio.translations.create(model="parakeet", file=f)
            assert "only transcribes (no translation)" in str(refused.value)


def test_silence_gives_no_text(model_dir, tmp_path):
    """A minute of digital silence costs no decoding and says nothing (no invented words)."""
    path = tmp_path / "silence.flac"
    audio.encode(np.zeros(60 * SR, dtype=np.float32), SR, path, "flac")
    result = parakeet.transcribe(parakeet.load(model_dir), path)
    assert result.segments == [] and result.text == "" and result.duration == pytest.approx(60, abs=0.1)
