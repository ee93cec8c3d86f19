"""Hostile-input benchmarks (not tests): run `.venv/bin/python bench/inputs.py`.

1. reference: peak RSS of a fresh process reading a voice reference as the TTS runners do
   (`audio.decode(..., first_seconds=120)` at 22.05 kHz) from a 1-minute file and from a 3-hour
   one (a LibriVox clip, then silence: a 2 MB FLAC); the ratio.
2. silence: tiny.en on 3 hours of silence (segments, seconds), and on an hour of silence followed
   by a LibriVox clip (segments that start before the clip: invented text).

Figures go to stdout as JSON lines. Run one by name: `bench/inputs.py silence`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from conftest import librivox  # noqa: E402
from saladcog import audio, weights  # noqa: E402
from saladcog.asr import model as asr_model  # noqa: E402
from saladcog.asr.transcribe import transcribe  # noqa: E402

SR = 16000
MINUTE = np.zeros(SR * 60, dtype=np.float32)


def report(name: str, **figures) -> None:
    print(json.dumps({"bench": name, **figures}), flush=True)


def voice_then_silence(path: Path, minutes: int) -> Path:
    speech = librivox()[0].samples
    blocks = [speech, MINUTE[: MINUTE.size - speech.size], *[MINUTE] * (minutes - 1)]
    return audio.encode(blocks, SR, path, "flac")


def peak_rss_mib(path: Path) -> float:
    code = (
        "import resource, sys; from saladcog import audio; "
        f"audio.decode({str(path)!r}, 22050, first_seconds=120); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(ROOT / "src")})
    return float(done.stdout.strip())


def bench_reference(folder: Path) -> None:
    short = peak_rss_mib(voice_then_silence(folder / "minute.flac", 1))
    long_file = voice_then_silence(folder / "hours.flac", 180)
    long = peak_rss_mib(long_file)
    report("reference", one_minute_mib=round(short, 1), three_hours_mib=round(long, 1),
           three_hour_file_mb=round(long_file.stat().st_size / 1e6, 2), ratio=round(long / short, 3))


def bench_silence(folder: Path) -> None:
    model = asr_model.load(weights.whisper_model_dir())
    silent = audio.encode([MINUTE] * 180, SR, folder / "silence.flac", "flac")
    started = time.perf_counter()
    result = transcribe(model, silent)
    report("silence", audio_seconds=result.detected.duration, segments=len(result.segments),
           seconds=round(time.perf_counter() - started, 2))
    late = folder / "late.flac"
    audio.encode([*[MINUTE] * 60, librivox()[0].samples], SR, late, "flac")
    started = time.perf_counter()
    result = transcribe(model, late)
    report("speech after an hour of silence", segments=len(result.segments),
           segments_before_speech=sum(s.start < 3599.5 for s in result.segments),
           text=result.text, seconds=round(time.perf_counter() - started, 2))


def main() -> None:
    chosen = set(sys.argv[1:]) or {"reference", "silence"}
    with tempfile.TemporaryDirectory() as folder:
        if "reference" in chosen:
            bench_reference(Path(folder))
        if "silence" in chosen:
            bench_silence(Path(folder))


if __name__ == "__main__":
    main()
