"""Parakeet TDT (NVIDIA's FastConformer encoder with a token-and-duration transducer) on onnx-asr.

onnx-asr runs the ONNX exports of the NeMo checkpoints (`istupakov/parakeet-tdt-0.6b-v2-onnx`,
`-v3-onnx`: encoder-model.onnx with its .data, decoder_joint-model.onnx, vocab.txt, config.json)
with onnxruntime: NeMo's log-mel front end (numpy on a CPU, an ONNX graph on a GPU), the
encoder, and the greedy TDT decode. saladcog adds what the Whisper runners have: any media FFmpeg reads, files of any length
in bounded memory, silence cut out, segments and word timings, and requests refused in words.

Long audio: Parakeet's full attention is limited in input length (about 24 minutes for v2), and
costs memory with the square of it. The stream is cut into pieces of at most PIECE_SECONDS at
the quietest point before each mark (`clips.py`, as the Whisper runners cut), long silences are
dropped, and `batch_size` pieces go through the encoder together. Peak memory depends on
PIECE_SECONDS × batch_size, not on the file.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from saladcog import audio
from saladcog.asr.clips import clips, without_silence

SAMPLING_RATE = 16000
PIECE_SECONDS = 60.0
# One encoder frame: NeMo's 10 ms feature hop times the FastConformer's 8x subsampling.
FRAME_SECONDS = 0.08
# TDT predicts durations of 0..4 frames (parakeet-tdt-0.6b's `durations`), so a token ends at
# most 4 frames after it starts: a word's end is the next token's start, capped there.
MAX_TOKEN_FRAMES = 4
# A segment ends after a word that ends a sentence, or after this long.
MAX_SEGMENT_SECONDS = 30.0
SENTENCE_END = re.compile(r"[.?!。？！]['\"”’)]*$")

ENGLISH = ("en",)
# parakeet-tdt-0.6b-v3's 25 European languages (its model card).
EUROPEAN = ("bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "hr", "hu", "it", "lt", "lv",
            "mt", "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sv", "uk")
# The model directories the image's weights step writes, named as onnx-asr names the models.
MODELS = {"parakeet-tdt-0.6b-v2": ENGLISH, "parakeet-tdt-0.6b-v3": EUROPEAN}


class RequestError(ValueError):
    """A transcription request that this model cannot serve; the message says why."""


@dataclasses.dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str  # with its leading space, as Whisper's words
    probability: float


@dataclasses.dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: list[int]
    words: list[Word]


@dataclasses.dataclass(frozen=True)
class ParakeetModel:
    asr: object  # onnx-asr's timestamped adapter
    path: Path
    device: str
    languages: tuple[str, ...]
    token_ids: dict[str, int]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def multilingual(self) -> bool:
        return len(self.languages) > 1


@dataclasses.dataclass(frozen=True)
class Transcription:
    language: str  # the requested one; "en" for v2; "" when v3 was not told (it does not say)
    duration: float
    segments: list[Segment]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)


def default_device() -> str:
    import onnxruntime

    forced = os.environ.get("SALADCOG_DEVICE")
    if forced:
        return forced
    return "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"


def load(path: str | os.PathLike, device: str | None = None) -> ParakeetModel:
    """Load a model directory named after one of MODELS (its name says which languages it knows)."""
    import onnx_asr
    import onnxruntime

    path = Path(path)
    if path.name not in MODELS:
        raise ValueError(f"{path} is not a Parakeet model directory: its name must be one of {', '.join(MODELS)}")
    device = device or default_device()
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        # onnxruntime-gpu finds cuDNN and the CUDA libraries in the nvidia-* wheels this way.
        onnxruntime.preload_dlls()
        providers.insert(0, "CUDAExecutionProvider")
    asr = onnx_asr.load_model(f"nemo-{path.name}", path, providers=providers).with_timestamps()
    with (path / "vocab.txt").open(encoding="utf-8") as vocab:
        token_ids = {token.replace("\u2581", " "): int(i) for token, i in (line.rstrip("\n").rsplit(" ", 1) for line in vocab)}
    return ParakeetModel(asr=asr, path=path, device=device, languages=MODELS[path.name], token_ids=token_ids)


def check_request(model: ParakeetModel, task: str, language: str | None) -> None:
    """Refuse, with a message that names the problem, what the model cannot do."""
    if task != "transcribe":
        raise RequestError(f"task {task!r} is not available: {model.name} only transcribes (no translation)")
    if language is not None and language not in model.languages:
        if not model.multilingual:
            raise RequestError(f"{model.name} is English-only: language must be 'en' or 'auto', not {language!r}")
        raise RequestError(
            f"{model.name} does not know language {language!r}: use 'auto' or one of {', '.join(model.languages)}"
        )


def _seconds(value: float) -> float:
    return round(float(value), 3)


def _words(result, offset: float, piece_seconds: float, token_ids: dict[str, int]) -> list[tuple[Word, list[int]]]:
    """(word, its token ids) from onnx-asr's tokens, their start times and log-probabilities."""
    tokens, starts, logprobs = result.tokens or [], result.timestamps or [], result.logprobs or []
    ends = [*starts[1:], piece_seconds]
    words: list[tuple[Word, list[int]]] = []
    # A token that starts with a space (SentencePiece's ▁) opens a word.
    groups: list[list[int]] = []
    for i, token in enumerate(tokens):
        if token.startswith(" ") or not groups:
            groups.append([])
        groups[-1].append(i)
    for group in groups:
        last = group[-1]
        end = min(ends[last], starts[last] + MAX_TOKEN_FRAMES * FRAME_SECONDS)
        text = "".join(tokens[i] for i in group)
        if not text.startswith(" "):
            text = " " + text
        probability = float(np.mean([math.exp(logprobs[i]) for i in group])) if logprobs else 0.0
        word = Word(
            start=_seconds(offset + starts[group[0]]),
            end=_seconds(offset + end),
            word=text,
            probability=round(probability, 4),
        )
        words.append((word, [token_ids.get(tokens[i], -1) for i in group]))
    return words


def _segments(words: list[tuple[Word, list[int]]]) -> Iterator[tuple[list[Word], list[int]]]:
    """Words grouped into sentences, none longer than MAX_SEGMENT_SECONDS."""
    current: list[Word] = []
    ids: list[int] = []
    for word, word_ids in words:
        if current and word.end - current[0].start > MAX_SEGMENT_SECONDS:
            yield current, ids
            current, ids = [], []
        current.append(word)
        ids.extend(word_ids)
        if SENTENCE_END.search(word.word):
            yield current, ids
            current, ids = [], []
    if current:
        yield current, ids


def _pieces(path, name: str | None) -> Iterator[tuple[float, np.ndarray]]:
    blocks = audio.stream(path, SAMPLING_RATE, block_seconds=PIECE_SECONDS / 2, name=name)
    return without_silence(clips(blocks, SAMPLING_RATE, PIECE_SECONDS), SAMPLING_RATE)


def transcribe_stream(
    model: ParakeetModel,
    path,
    *,
    task: str = "transcribe",
    language: str | None = None,
    batch_size: int = 1,
    name: str | None = None,
) -> tuple[Iterator[Segment], float]:
    """Check the request and the file, then return a generator of segments (timestamps relative
    to the whole file) and the file's duration. `name` is how errors name the file."""
    check_request(model, task, language)
    info = audio.probe(path, name=name)
    pieces = _pieces(path, name)

    def generate() -> Iterator[Segment]:
        next_id = 1
        while batch := list(itertools.islice(pieces, batch_size)):
            results = model.asr.recognize([samples for _, samples in batch], sample_rate=SAMPLING_RATE)
            for (offset, samples), result in zip(batch, results):
                words = _words(result, offset, len(samples) / SAMPLING_RATE, model.token_ids)
                for group, ids in _segments(words):
                    yield Segment(
                        id=next_id,
                        start=group[0].start,
                        end=group[-1].end,
                        text="".join(w.word for w in group).strip(),
                        tokens=ids,
                        words=group,
                    )
                    next_id += 1

    return generate(), _seconds(info.duration)


def transcribe(model: ParakeetModel, path, **options) -> Transcription:
    segments, duration = transcribe_stream(model, path, **options)
    language = options.get("language") or ("en" if not model.multilingual else "")
    return Transcription(language=language, duration=duration, segments=list(segments))


def segment_dict(segment: Segment, with_words: bool = True) -> dict:
    """A segment as JSON: the fields of Whisper's segments that a transducer has."""
    shaped = {"id": segment.id, "start": segment.start, "end": segment.end, "text": segment.text,
              "tokens": segment.tokens}
    if with_words:
        shaped["words"] = [dataclasses.asdict(w) for w in segment.words]
    return shaped
