"""Diarization benchmarks (not tests): run `.venvs/diarize/bin/python bench/diarize.py`.

Models: the embedded tiny.en and a tiny random community-1 (tests/tiny_pyannote.py: the real
pipeline, VBx clustering and WeSpeakerResNet34 embedding, with a small segmentation network and
16 mel bins). Figures go to stdout as JSON lines. Run a subset by name: `bench/diarize.py memory`.

1. cost: the diarization stage's time relative to transcription on the same file, through
   `transcribe_and_diarize` as the runner calls it (community-1's settings: a 10 s window every
   1 s); median of 3 runs after a warm-up.
2. memory: peak RSS (VmHWM) of a fresh process transcribing and diarizing 10 minutes vs 60
   minutes of two voices taking turns (half speech), and the same 60 minutes with the decoded
   waveform held in memory instead of mapped and released: the control that shows the figure
   can tell a waveform kept whole from one that is not. On 2 CPU cores pyannote's default 1 s
   step would take most of an hour on the 60-minute file, so this bench slides the window by
   10 s (`segmentation_step: 1.0`): the waveform is read the same way; pyannote's per-window
   output (25 MB per hour for each copy of the scores at the default step) is a tenth here.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

from asr import bench_main, in_child, peak_rss_mib, report  # noqa: E402
from conftest import SPEECH, librivox  # noqa: E402
from saladcog import audio, weights  # noqa: E402
from saladcog.asr import model as asr_model  # noqa: E402
from saladcog.asr.transcribe import TranscribeOptions  # noqa: E402
from saladcog.diarize import pipeline as diarization  # noqa: E402
from saladcog.diarize import transcript, waveform  # noqa: E402
from tiny_pyannote import make_tiny_community_1  # noqa: E402

SR = 16000
OPTIONS = TranscribeOptions(word_timestamps=True)


def conversation(path: Path, minutes: float) -> Path:
    """A man (goforward.wav) and a LibriVox narrator taking turns, each round followed by as
    much silence as speech; `minutes` long, written block by block."""
    man = audio.decode(SPEECH / "goforward.wav", SR)
    pause = np.zeros(SR // 2, dtype=np.float32)
    speech = np.concatenate([p for clip in librivox() for p in (man, pause, clip.samples, pause)])
    round_ = np.concatenate([speech, np.zeros_like(speech)])
    rounds = max(1, round(minutes * 60 * SR / round_.shape[0]))
    return audio.encode((round_ for _ in range(rounds)), SR, path, "flac")


def cost(workdir: Path, repeats: int = 3) -> None:
    pipeline = diarization.load(make_tiny_community_1(workdir / "community-1"))
    model = asr_model.load(weights.whisper_model_dir())
    path = conversation(workdir / "cost.flac", minutes=2)
    runs = []
    for _ in range(repeats + 1):
        result = transcript.transcribe_and_diarize(model, pipeline, path, OPTIONS)
        runs.append((result.transcription_seconds, result.diarization_seconds))
    transcription_s = statistics.median(t for t, _ in runs[1:])
    diarization_s = statistics.median(d for _, d in runs[1:])
    report(
        "diarization_cost",
        audio_seconds=result.detected.duration,
        transcription_s=round(transcription_s, 2),
        diarization_s=round(diarization_s, 2),
        diarization_over_transcription=round(diarization_s / transcription_s, 2),
        speakers=len(result.diarization.speakers),
    )


class HeldWaveform(waveform.DiskWaveform):
    """The control: the whole waveform in anonymous memory, never released."""

    def release(self) -> None:
        pass


@contextlib.contextmanager
def held_in_memory(path, *, name=None):
    with waveform.decoded(path, name=name) as mapped:
        yield HeldWaveform(np.array(mapped.samples), mapped.has_sound)


def peak_rss_child(pipeline_dir: str, path: str, hold: bool) -> None:
    pipeline = diarization.load(pipeline_dir)
    model = asr_model.load(weights.whisper_model_dir())
    if hold:
        transcript.decoded = held_in_memory
    started = time.perf_counter()
    result = transcript.transcribe_and_diarize(model, pipeline, path, OPTIONS)
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "audio_seconds": result.detected.duration,
                      "seconds": round(time.perf_counter() - started, 1), "speakers": len(result.diarization.speakers)}))


def memory(workdir: Path) -> None:
    pipeline_dir = make_tiny_community_1(workdir / "community-1-step-10s")
    config = yaml.safe_load((pipeline_dir / "config.yaml").read_text())
    config["pipeline"]["params"]["segmentation_step"] = 1.0
    (pipeline_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    figures = {}
    for minutes, hold in ((10, False), (60, False), (60, True)):
        path = workdir / f"{minutes}min.flac"
        if not path.exists():
            conversation(path, minutes)
        figures[(minutes, hold)] = in_child(__file__, str(pipeline_dir), str(path), "hold" if hold else "map")
    report(
        "peak_rss",
        rss_10min_mib=figures[(10, False)]["peak_rss_mib"],
        rss_60min_mib=figures[(60, False)]["peak_rss_mib"],
        ratio=round(figures[(60, False)]["peak_rss_mib"] / figures[(10, False)]["peak_rss_mib"], 3),
        rss_60min_waveform_held_mib=figures[(60, True)]["peak_rss_mib"],
        held_ratio=round(figures[(60, True)]["peak_rss_mib"] / figures[(10, False)]["peak_rss_mib"], 3),
        audio_seconds=[figures[(10, False)]["audio_seconds"], figures[(60, False)]["audio_seconds"]],
        seconds=[f["seconds"] for f in figures.values()],
    )


BENCHES = {"cost": cost, "memory": memory}


if __name__ == "__main__":
    bench_main(BENCHES, lambda pipeline_dir, path, held: peak_rss_child(pipeline_dir, path, held == "hold"))
