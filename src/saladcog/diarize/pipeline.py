"""Who spoke when: pyannote.audio 4's speaker diarization on a whole decoded waveform.

The pipeline (pyannote/speaker-diarization-community-1 in the image, baked at build) is loaded
from its directory with `Pipeline.from_pretrained`, offline, telemetry off. It is given the
waveform as a tensor over the mapped samples (`waveform.DiskWaveform`), so pyannote neither
decodes the file again nor needs torchcodec and FFmpeg. pyannote slides a 10 s window over the
tensor in batches (`segmentation_batch_size`, then `embedding_batch_size` windows at a time);
its progress hook releases the mapped pages after each batch, so what it holds of the waveform
stays a batch long. What grows with the length is its per-window output: 3 local speakers ×
589 frames of scores per window, a window a second, is 25 MB of float32 per hour, plus 11 MB
of embeddings (3 × 256 per window), plus 17 MB of float64 per hour per speaker found while it
rebuilds the turns (docs/diarize.md has the arithmetic).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from saladcog.diarize.speakers import Turn
from saladcog.diarize.waveform import SAMPLING_RATE, DiskWaveform


class SpeakerCountError(ValueError):
    """num_speakers / min_speakers / max_speakers that no answer can satisfy."""


@dataclasses.dataclass
class Diarization:
    turns: list[Turn]  # who spoke when; turns of different speakers may overlap
    exclusive_turns: list[Turn]  # one speaker at a time: what segments and words are matched to
    speakers: list[str]  # SPEAKER_00, SPEAKER_01, ... in pyannote's order
    embeddings: dict[str, list[float]]  # one centroid per speaker, keyed by label


NO_SPEAKERS = Diarization(turns=[], exclusive_turns=[], speakers=[], embeddings={})


def check_speaker_counts(num: int | None, minimum: int | None, maximum: int | None) -> None:
    """Refuse counts that contradict each other, naming the inputs as the caller sent them."""
    if minimum is not None and maximum is not None and minimum > maximum:
        raise SpeakerCountError(f"min_speakers ({minimum}) is larger than max_speakers ({maximum})")
    if num is not None and minimum is not None and num < minimum:
        raise SpeakerCountError(f"num_speakers ({num}) is smaller than min_speakers ({minimum})")
    if num is not None and maximum is not None and num > maximum:
        raise SpeakerCountError(f"num_speakers ({num}) is larger than max_speakers ({maximum})")


def load(directory: str | os.PathLike):
    """The diarization pipeline in `directory` (config.yaml and its sub-models), on the GPU when
    there is one."""
    # pyannote reports usage to its makers unless this is set before it is imported.
    os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
    import torch

    with warnings.catch_warnings():
        # pyannote warns at import when torchcodec cannot decode files: it is never asked to.
        warnings.filterwarnings("ignore", message=r"(?s).*torchcodec", category=UserWarning)
        from pyannote.audio import Pipeline

    pipeline = Pipeline.from_pretrained(Path(directory))
    if pipeline is None:
        raise RuntimeError(f"no diarization pipeline in {directory}")
    if torch.cuda.is_available():
        pipeline.to(torch.device("cuda"))
    return pipeline


def _turns(annotation, duration: float) -> list[Turn]:
    """Turns in seconds, cut at the end of the audio: pyannote pads the last 10 s window with
    zeros, and a turn can run on into that padding."""
    turns = []
    for segment, _, label in annotation.itertracks(yield_label=True):
        start, end = round(float(segment.start), 3), round(min(float(segment.end), duration), 3)
        if end > start:
            turns.append(Turn(start, end, str(label)))
    return turns


def diarize(
    pipeline,
    waveform: DiskWaveform,
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> Diarization:
    """Diarize the whole waveform once. Audio that is all silence has no speakers."""
    check_speaker_counts(num_speakers, min_speakers, max_speakers)
    if not waveform.has_sound:
        return NO_SPEAKERS
    import torch

    with warnings.catch_warnings():
        # The mapping is read-only and pyannote only reads it: no copy for a writable tensor.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        samples = torch.from_numpy(waveform.samples)[None]
    try:
        output = pipeline(
            {"waveform": samples, "sample_rate": SAMPLING_RATE, "uri": "audio"},
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            hook=lambda *args, **kwargs: waveform.release(),
        )
    finally:
        del samples
        waveform.release()
        if torch.cuda.is_available():
            # Hand the cached blocks back before the next request's transcription needs them.
            torch.cuda.empty_cache()
    speakers = [str(label) for label in output.speaker_diarization.labels()]
    embeddings = {}
    if output.speaker_embeddings is not None:
        centroids = np.nan_to_num(np.asarray(output.speaker_embeddings, dtype=np.float64))
        embeddings = {label: [round(float(x), 6) for x in row] for label, row in zip(speakers, centroids)}
    return Diarization(
        turns=_turns(output.speaker_diarization, waveform.duration),
        exclusive_turns=_turns(output.exclusive_speaker_diarization, waveform.duration),
        speakers=speakers,
        embeddings=embeddings,
    )
