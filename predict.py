"""Cog runners, one thin class per model: parse the inputs, call saladcog, shape the output.

cog.yaml (Whisper large-v3) and cog-*.yaml each point `run:` at one class here. Each
image installs only its own model's packages (faster-whisper, or torch and transformers), so a
runner imports its engine inside its methods, never at the top of this file.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Iterator
from typing import Any, Optional

from cog import BaseModel, BaseRunner, Input, Path, streaming

from saladcog import inputs, weights
from saladcog.asr import formats

# File inputs reach run() as sent (data URI or URL) and are fetched by saladcog within limits;
# anything else, such as a path on the server, is refused (saladcog/inputs.py says why).
inputs.take_over_cog_paths()


class WhisperInputs:
    """Inputs shared by the Whisper runners. Class attributes, because `cog build` reads the
    schema statically and resolves `Input()` references of this form (not module constants)."""

    audio = Input(description="Audio or video file (any format FFmpeg decodes), or its URL.")
    task = Input(
        description="transcribe: text in the spoken language; translate: English text.",
        default="transcribe",
        choices=["transcribe", "translate"],
    )
    language = Input(
        description="Language spoken in the audio as an ISO 639-1 code (en, fr, de, …), or 'auto' to detect it.",
        default="auto",
    )
    transcription = Input(
        description="Format of the `transcription` output: plain text, SubRip or WebVTT subtitles.",
        default="plain text",
        choices=["plain text", "srt", "vtt"],
    )
    word_timestamps = Input(description="Add word-level timings to each segment.", default=False)
    vad_filter = Input(description="Skip silence with the Silero voice-activity detector before decoding.", default=False)
    batch_size = Input(
        description="1: sequential decoding. Above 1: faster-whisper's batched pipeline (faster on a GPU).",
        default=1,
        ge=1,
        le=64,
    )
    beam_size = Input(description="Beam width of the decoder.", default=5, ge=1, le=10)
    temperature = Input(
        description="Sampling temperature; 0 decodes greedily, falling back to higher temperatures when a window fails.",
        default=0.0,
        ge=0.0,
        le=1.0,
    )
    initial_prompt = Input(description="Text that conditions the first window: names, spellings, style.", default=None)
    condition_on_previous_text = Input(
        description="Prompt each window with the previous window's text (default: on for Whisper, off for Distil-Whisper).",
        default=None,
    )


SUBTITLE_FORMATS = {"plain text": formats.to_text, "srt": formats.to_srt, "vtt": formats.to_vtt}


# MetaVoice speaks in this public-domain LibriVox narrator's voice when no reference is given
# ("Sense and Sensibility", ch. 1, 24.7 s; the same clips are in tests/data/speech/librivox).
METAVOICE_DEFAULT_VOICE = Path(__file__).resolve().parent / "models" / "metavoice" / "default_voice.flac"


class TranscriptionOutput(BaseModel):
    detected_language: str
    language_probability: float
    duration: float
    text: str
    transcription: str
    segments: list[Any]
    metrics: Any


class Whisper(BaseRunner):
    """Whisper large-v3 on faster-whisper (CTranslate2): float16 on a GPU, int8 on a CPU."""

    baked_models: tuple[str, ...] = ("whisper-large-v3",)
    condition_default = True

    def setup(self) -> None:
        weights.stay_offline()
        from saladcog.asr import model as asr_model

        self.model = asr_model.load(weights.whisper_model_dir(*self.baked_models))
        print(f"loaded {self.model.path} on {self.model.device} ({self.model.compute_type})")

    def options(self, task: str, language: str, *, initial_prompt, condition_on_previous_text, **rest):
        from saladcog.asr.transcribe import TranscribeOptions

        return TranscribeOptions(
            task=task,
            language=None if language == "auto" else language.strip().lower(),
            initial_prompt=initial_prompt or None,
            condition_on_previous_text=(
                self.condition_default if condition_on_previous_text is None else condition_on_previous_text
            ),
            **rest,
        )

    def run(
        self,
        audio: Path = WhisperInputs.audio,
        task: str = WhisperInputs.task,
        language: str = WhisperInputs.language,
        transcription: str = WhisperInputs.transcription,
        word_timestamps: bool = WhisperInputs.word_timestamps,
        vad_filter: bool = WhisperInputs.vad_filter,
        batch_size: int = WhisperInputs.batch_size,
        beam_size: int = WhisperInputs.beam_size,
        temperature: float = WhisperInputs.temperature,
        initial_prompt: Optional[str] = WhisperInputs.initial_prompt,
        condition_on_previous_text: Optional[bool] = WhisperInputs.condition_on_previous_text,
    ) -> TranscriptionOutput:
        from saladcog.asr.transcribe import segment_dict, transcribe

        options = self.options(
            task,
            language,
            # Word alignment also gives subtitle cues start and end times that follow the speech.
            word_timestamps=word_timestamps or transcription != "plain text",
            vad_filter=vad_filter,
            batch_size=batch_size,
            beam_size=beam_size,
            temperature=temperature,
            initial_prompt=initial_prompt,
            condition_on_previous_text=condition_on_previous_text,
        )
        started = time.perf_counter()
        with inputs.fetched(audio, "audio") as sent:
            result = transcribe(self.model, sent.path, options, name=sent.name)
        seconds = time.perf_counter() - started
        return TranscriptionOutput(
            detected_language=result.detected.language,
            language_probability=result.detected.language_probability,
            duration=result.detected.duration,
            text=result.text,
            transcription=SUBTITLE_FORMATS[transcription](result.segments),
            segments=[segment_dict(s, with_words=word_timestamps) for s in result.segments],
            metrics=self.metrics(result.detected.duration, seconds),
        )

    def metrics(self, audio_seconds: float, seconds: float) -> dict:
        return {
            "audio_seconds": audio_seconds,
            "processing_seconds": round(seconds, 3),
            "real_time_factor": round(seconds / audio_seconds, 4),
            "model": self.model.name,
            "device": self.model.device,
            "compute_type": self.model.compute_type,
        }


class WhisperTurbo(Whisper):
    """Whisper large-v3-turbo: large-v3's encoder with 4 decoder layers, several times faster."""

    baked_models = ("whisper-large-v3-turbo",)


class DistilWhisper(Whisper):
    """Distil-Whisper large-v3 (or v2): 2 decoder layers, ~6x faster than large-v3.

    Distil-Whisper is trained without previous-text prompting, so that is off by default.
    """

    baked_models = ("distil-whisper-large-v3", "distil-whisper-large-v2")
    condition_default = False


class DiarizedTranscriptionOutput(BaseModel):
    detected_language: str
    language_probability: float
    duration: float
    text: str
    transcription: str
    segments: list[Any]
    num_speakers: int
    speakers: list[Any]
    speaker_embeddings: Any
    metrics: Any


class WhisperDiarize(WhisperTurbo):
    """Whisper large-v3-turbo with pyannote's speaker diarization (community-1): a speaker on
    every segment and word. The file is decoded once; Whisper, then pyannote, run on it one
    after the other, so that their memory peaks do not add up."""

    def setup(self) -> None:
        super().setup()
        from saladcog.diarize import pipeline as diarization

        directory = weights.diarization_pipeline_dir()
        self.diarizer = diarization.load(directory)
        print(f"loaded the diarization pipeline in {directory}")

    def run(
        self,
        audio: Path = WhisperInputs.audio,
        task: str = WhisperInputs.task,
        language: str = WhisperInputs.language,
        transcription: str = Input(
            description="Format of the `transcription` output: plain text, or SubRip or WebVTT subtitles with a [SPEAKER_00] prefix on each cue.",
            default="plain text",
            choices=["plain text", "srt", "vtt"],
        ),
        diarize: bool = Input(description="Find who speaks when; off: a plain transcription.", default=True),
        num_speakers: Optional[int] = Input(
            description="Number of speakers, when known. Empty: found from the audio.", default=None, ge=1, le=50
        ),
        min_speakers: Optional[int] = Input(description="At least this many speakers.", default=None, ge=1, le=50),
        max_speakers: Optional[int] = Input(description="At most this many speakers.", default=None, ge=1, le=50),
        speaker_embeddings: bool = Input(
            description="Add each speaker's voice embedding (256 numbers, keyed by label): speakers can then be matched across files.",
            default=False,
        ),
        word_timestamps: bool = WhisperInputs.word_timestamps,
        vad_filter: bool = WhisperInputs.vad_filter,
        batch_size: int = WhisperInputs.batch_size,
        beam_size: int = WhisperInputs.beam_size,
        temperature: float = WhisperInputs.temperature,
        initial_prompt: Optional[str] = WhisperInputs.initial_prompt,
        condition_on_previous_text: Optional[bool] = WhisperInputs.condition_on_previous_text,
    ) -> DiarizedTranscriptionOutput:
        from saladcog.diarize.transcript import transcribe_and_diarize

        options = self.options(
            task,
            language,
            # Speakers are given per word; word alignment also gives subtitle cues their times.
            word_timestamps=True,
            vad_filter=vad_filter,
            batch_size=batch_size,
            beam_size=beam_size,
            temperature=temperature,
            initial_prompt=initial_prompt,
            condition_on_previous_text=condition_on_previous_text,
        )
        started = time.perf_counter()
        with inputs.fetched(audio, "audio") as sent:
            result = transcribe_and_diarize(
                self.model, self.diarizer, sent.path, options, name=sent.name, diarize=diarize,
                num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
            )
        seconds = time.perf_counter() - started
        segments = result.segment_dicts(with_words=word_timestamps)
        found = result.diarization
        text = formats.to_text(result.segments)
        subtitles = SUBTITLE_FORMATS[transcription]
        return DiarizedTranscriptionOutput(
            detected_language=result.detected.language,
            language_probability=result.detected.language_probability,
            duration=result.detected.duration,
            text=text,
            transcription=text if subtitles is formats.to_text else subtitles(
                result.segments, [s["speaker"] for s in segments] if found else None
            ),
            segments=segments,
            num_speakers=len(found.speakers) if found else 0,
            speakers=[dataclasses.asdict(t) for t in found.turns] if found else [],
            speaker_embeddings=found.embeddings if found and speaker_embeddings else None,
            metrics={
                **self.metrics(result.detected.duration, seconds),
                "transcription_seconds": round(result.transcription_seconds, 3),
                "diarization_seconds": round(result.diarization_seconds, 3),
            },
        )


class WhisperStream(Whisper):
    """Whisper that sends each segment as soon as it is decoded, as a server-sent event
    (`Accept: text/event-stream`; `saladcog.client.Client.stream_output`).

    A streaming run() returns an iterator, so a plain request to it gets the list of segments,
    not Whisper's object: a runner of its own keeps Whisper's output as it is. Sequential
    decoding only (the batched pipeline decodes a batch before yielding), and no subtitle format
    (the client formats the segments it received)."""

    @streaming
    def run(
        self,
        audio: Path = WhisperInputs.audio,
        task: str = WhisperInputs.task,
        language: str = WhisperInputs.language,
        word_timestamps: bool = WhisperInputs.word_timestamps,
        vad_filter: bool = WhisperInputs.vad_filter,
        beam_size: int = WhisperInputs.beam_size,
        temperature: float = WhisperInputs.temperature,
        initial_prompt: Optional[str] = WhisperInputs.initial_prompt,
        condition_on_previous_text: Optional[bool] = WhisperInputs.condition_on_previous_text,
    ) -> Iterator[Any]:
        from saladcog.asr.transcribe import segment_dict, transcribe_stream

        options = self.options(
            task,
            language,
            word_timestamps=word_timestamps,
            vad_filter=vad_filter,
            beam_size=beam_size,
            temperature=temperature,
            initial_prompt=initial_prompt,
            condition_on_previous_text=condition_on_previous_text,
        )
        with inputs.fetched(audio, "audio") as sent:
            segments, _ = transcribe_stream(self.model, sent.path, options, name=sent.name)
            for segment in segments:
                yield segment_dict(segment, with_words=word_timestamps)


class Parakeet(BaseRunner):
    """NVIDIA Parakeet TDT 0.6B on onnx-asr (onnxruntime): v2 (English) or v3 (25 European
    languages), whichever the image baked (SALADCOG_PARAKEET_MODEL in cog-parakeet.yaml)."""

    def setup(self) -> None:
        weights.stay_offline()
        from saladcog.asr import parakeet

        self.model = parakeet.load(weights.parakeet_model_dir())
        print(f"loaded {self.model.path} on {self.model.device}")

    def run(
        self,
        audio: Path = WhisperInputs.audio,
        task: str = Input(
            description="transcribe: text in the spoken language. Parakeet does not translate: translate is refused.",
            default="transcribe",
            choices=["transcribe", "translate"],
        ),
        language: str = Input(
            description="Language spoken, as an ISO 639-1 code, or 'auto'. v2 knows en only; v3 25 European languages, which it finds by itself.",
            default="auto",
        ),
        transcription: str = WhisperInputs.transcription,
        word_timestamps: bool = WhisperInputs.word_timestamps,
        batch_size: int = Input(
            description="Pieces of up to 60 s encoded together (faster on a GPU; memory grows with it).",
            default=4,
            ge=1,
            le=32,
        ),
    ) -> TranscriptionOutput:
        from saladcog.asr import parakeet

        started = time.perf_counter()
        with inputs.fetched(audio, "audio") as sent:
            result = parakeet.transcribe(
                self.model,
                sent.path,
                task=task,
                language=None if language.strip().lower() == "auto" else language.strip().lower(),
                batch_size=batch_size,
                name=sent.name,
            )
        seconds = time.perf_counter() - started
        return TranscriptionOutput(
            detected_language=result.language,
            language_probability=1.0 if result.language else 0.0,
            duration=result.duration,
            text=result.text,
            transcription=SUBTITLE_FORMATS[transcription](result.segments),
            segments=[parakeet.segment_dict(s, with_words=word_timestamps) for s in result.segments],
            metrics={
                "audio_seconds": result.duration,
                "processing_seconds": round(seconds, 3),
                "real_time_factor": round(seconds / result.duration, 4),
                "model": self.model.name,
                "device": self.model.device,
                "compute_type": "float32",
            },
        )


class SpeechOutput(BaseModel):
    audio: Path
    metrics: Any


class MetaVoice(BaseRunner):
    """MetaVoice-1B zero-shot voice cloning on saladcog's engine (EnCodec decode, no MBD/DeepFilterNet)."""

    def setup(self) -> None:
        weights.stay_offline()
        from saladcog.tts.metavoice.engine import MetaVoice as MetaVoiceEngine

        self.engine = MetaVoiceEngine.from_dirs(
            os.environ.get("METAVOICE_MODEL_DIR", weights.WEIGHTS_ROOT / "metavoice-1B-v0.1"),
            os.environ.get("METAVOICE_ENCODEC_DIR", weights.WEIGHTS_ROOT / "encodec_24khz"),
        )
        # The default voice's embedding is computed once; a bad default file fails setup loudly.
        self.default_voice = self.engine.speaker_embedding(METAVOICE_DEFAULT_VOICE)
        print(f"MetaVoice-1B on {self.engine.device} ({self.engine.dtype})")

    def run(
        self,
        text: str = Input(description="Text to speak (English, at most 5000 characters; emoji, control characters and letters outside Latin-1 are dropped)."),
        reference_audio: Optional[Path] = Input(
            description="Voice to clone: speech in any format FFmpeg reads, 1 s minimum, 30 s or more clones best; only the first 120 s are used. Empty: a public-domain LibriVox narrator.",
            default=None,
        ),
        guidance: float = Input(
            description="Speaker guidance scale: higher follows the reference voice more closely.",
            default=3.0, ge=1.0, le=5.0,
        ),
        top_p: float = Input(
            description="Nucleus sampling of the first stage; 0.9-1.0 is stable.", default=0.95, ge=0.1, le=1.0
        ),
        temperature: float = Input(
            description="Sampling temperature of the first stage; the second stage samples at 1.0, as upstream.",
            default=1.0, ge=0.1, le=2.0,
        ),
        seed: Optional[int] = Input(
            description="Random seed; the same seed, text and voice give the same audio. Empty: random.",
            default=None, ge=0, le=2147483647,
        ),
        output_format: str = Input(description="Audio file format.", default="wav", choices=["wav", "mp3"]),
    ) -> SpeechOutput:
        from saladcog.tts.metavoice.engine import SAMPLE_RATE
        from saladcog.tts.metavoice.generate import SamplingParams
        from saladcog.tts.speech import write_speech

        started = time.perf_counter()
        self.engine.check_text(text)  # refuse bad text before decoding any audio
        voice = self.default_voice
        if reference_audio is not None:
            with inputs.fetched(reference_audio, "reference audio") as sent:
                voice = self.engine.speaker_embedding(sent.path, name=sent.name)
        seed = random.randint(0, 2**31 - 1) if seed is None else seed
        params = SamplingParams(guidance=guidance, temperature=temperature, top_p=top_p)
        speech = write_speech(self.engine.stream(text, voice, params, seed), SAMPLE_RATE, output_format)
        return SpeechOutput(
            audio=speech.path,
            metrics={
                **speech.metrics(text, started),
                "seed": seed,
                "device": str(self.engine.device),
                "dtype": str(self.engine.dtype).removeprefix("torch."),
            },
        )


OPENVOICE_SPEAKERS = ["EN-US", "EN-BR", "EN_INDIA", "EN-AU", "EN-Default"]


class OpenVoice(BaseRunner):
    """OpenVoice v2: MeloTTS English base speakers, voice cloning with the tone colour converter."""

    def setup(self) -> None:
        weights.stay_offline()
        from saladcog.tts.openvoice.engine import OpenVoice as OpenVoiceEngine
        from saladcog.tts.openvoice.engine import paths_from_env

        self.engine = OpenVoiceEngine(**paths_from_env())
        missing = set(OPENVOICE_SPEAKERS) - set(self.engine.speakers)
        if missing:
            raise RuntimeError(f"the MeloTTS checkpoint lacks speaker(s) {', '.join(sorted(missing))}")

    def run(
        self,
        text: str = Input(description="Text to speak (up to 200,000 characters; long text is read sentence by sentence)."),
        speaker: str = Input(
            description="Base speaker (accent) of MeloTTS English.", default="EN-US", choices=OPENVOICE_SPEAKERS
        ),
        reference_audio: Optional[Path] = Input(
            description="Speech to clone (any format FFmpeg decodes, 5-30 s of one voice works best). Empty: the base speaker.",
            default=None,
        ),
        speed: float = Input(description="Speaking rate (1 = normal).", default=1.0, ge=0.5, le=2.0),
        language: str = Input(description="Language of the text. Only English (EN) is supported for now.", default="EN"),
        output_format: str = Input(description="Audio file format.", default="wav", choices=["wav", "mp3"]),
        seed: Optional[int] = Input(description="Random seed for reproducible speech; empty: random.", default=None),
    ) -> SpeechOutput:
        from saladcog import audio
        from saladcog.tts.openvoice.engine import MAX_REFERENCE_SECONDS, Settings
        from saladcog.tts.speech import write_speech

        if language.strip().lower() not in ("en", "english"):
            raise ValueError(f"language {language!r} is not supported yet: only English (EN)")
        started = time.perf_counter()
        target_se = None
        if reference_audio is not None:
            with inputs.fetched(reference_audio, "reference audio") as sent:
                reference = audio.decode(
                    sent.path, self.engine.converter.sampling_rate, name=sent.name, first_seconds=MAX_REFERENCE_SECONDS
                )
            target_se = self.engine.reference_se(reference)
        rate = self.engine.output_rate(cloning=target_se is not None)
        pieces = self.engine.synthesize(text, speaker, Settings(speed=speed), seed=seed, target_se=target_se)
        speech = write_speech(pieces, rate, output_format)
        return SpeechOutput(
            audio=speech.path,
            metrics={**speech.metrics(text, started), "sample_rate": rate, "cloned": target_se is not None},
        )
