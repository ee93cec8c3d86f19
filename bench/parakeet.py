"""Parakeet benchmarks (not tests): run `.venv/bin/python bench/parakeet.py`.

On the tiny random Parakeet TDT of the tests (tests/tiny_parakeet.py: the real export's layout
and signatures, a small encoder), on this machine's CPU:

1. Server overhead: real-time factor through the real Cog server (POST /predictions over [::1],
   JSON + data URI) vs saladcog's engine called directly on the same file; runs alternated.
2. Peak RSS of a fresh process transcribing 10 minutes vs 60 minutes of audio (half speech).

Model: SALADCOG_MODEL_DIR if set (a real export, e.g. on a GPU), else the tiny model. Figures go
to stdout as JSON lines. Run a subset by name: `bench/parakeet.py memory` (overhead, memory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "bench")]

from asr import bench_main, in_child, peak_rss_mib, report, served_vs_direct, speech_file  # noqa: E402
from saladcog.asr import parakeet  # noqa: E402
from saladcog.client import data_uri  # noqa: E402


def model_dir(workdir: Path) -> Path:
    if os.environ.get("SALADCOG_MODEL_DIR"):
        return Path(os.environ["SALADCOG_MODEL_DIR"])
    path = workdir / "parakeet-tdt-0.6b-v2"
    if not path.exists():
        # In a child: torch (which writes the model) would otherwise share this process with
        # the directly called engine, and not with the server's worker.
        code = f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from tiny_parakeet import make_tiny_parakeet; make_tiny_parakeet(__import__('pathlib').Path({str(path)!r}))"
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return path


def server_overhead(workdir: Path, repeats: int = 11) -> None:
    """Direct and served runs alternate, so that a change in the machine's load hits both."""
    path = speech_file(workdir / "overhead.wav", rounds=3, silence_seconds=0)
    directory = model_dir(workdir)
    model = parakeet.load(directory)

    def direct() -> float:
        started = time.perf_counter()
        parakeet.transcribe(model, path, batch_size=4)
        return time.perf_counter() - started

    served_vs_direct("parakeet_server_overhead", path, direct, "parakeet",
                     {"audio": data_uri(path), "batch_size": 4}, env={"SALADCOG_MODEL_DIR": str(directory)},
                     repeats=repeats)


def peak_rss_child(directory: str, path: str) -> None:
    model = parakeet.load(directory)
    started = time.perf_counter()
    result = parakeet.transcribe(model, path, batch_size=4)
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "audio_seconds": result.duration,
                      "words": sum(len(s.words) for s in result.segments),
                      "processing_seconds": round(time.perf_counter() - started, 1)}))


def peak_memory(workdir: Path) -> None:
    directory = model_dir(workdir)
    figures = {}
    for minutes in (10, 60):
        # One round is ~28 s of speech plus silence, so both files are half speech.
        path = speech_file(workdir / f"{minutes}min.mp3", rounds=minutes * 2, silence_seconds=2.0)
        figures[minutes] = in_child(__file__, str(directory), str(path))
    report(
        "parakeet_peak_rss",
        rss_10min_mib=figures[10]["peak_rss_mib"],
        rss_60min_mib=figures[60]["peak_rss_mib"],
        audio_seconds=[figures[10]["audio_seconds"], figures[60]["audio_seconds"]],
        words=[figures[10]["words"], figures[60]["words"]],
        processing_seconds=[figures[10]["processing_seconds"], figures[60]["processing_seconds"]],
        ratio=round(figures[60]["peak_rss_mib"] / figures[10]["peak_rss_mib"], 3),
    )


BENCHES = {"overhead": server_overhead, "memory": peak_memory}


if __name__ == "__main__":
    bench_main(BENCHES, peak_rss_child)
