"""Transcription benchmarks (not tests): run `.venv/bin/python bench/asr.py`.

1. Server overhead: real-time factor through the real Cog server (POST /predictions over [::1])
   vs faster-whisper called directly, same audio, same settings, same process count; the ratio.
2. Batched vs sequential decoding on the same ~85 s recording.
3. Peak RSS of a fresh process transcribing 10 minutes vs 60 minutes of audio.
4. Word error rate through the real Cog server vs faster-whisper alone on the same files and
   settings: the LibriVox clips as shipped, and at 22.05 kHz with short silent edges.

Model: SALADCOG_MODEL_DIR if set, else the embedded tiny.en. Figures go to stdout as JSON lines.
Run a subset by name: `bench/asr.py memory` (overhead, batched, memory, wer).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from conftest import engine_segments, librivox, normalize, resampled_with_edges  # noqa: E402
from saladcog import audio, weights  # noqa: E402
from saladcog.client import data_uri  # noqa: E402
from saladcog.asr import model as asr_model  # noqa: E402
from saladcog.asr.transcribe import TranscribeOptions, transcribe  # noqa: E402
from saladcog.serve import CogServer  # noqa: E402

SR = 16000


def speech_file(path: Path, rounds: int, silence_seconds: float, gap_seconds: float = 0.6) -> Path:
    """Rounds of the five LibriVox clips, each round followed by `silence_seconds` of silence."""
    gap = np.zeros(int(gap_seconds * SR), dtype=np.float32)
    clips = [c.samples for c in librivox()]
    silence = np.zeros(int(silence_seconds * SR), dtype=np.float32)
    round_ = np.concatenate([p for c in clips for p in (c, gap)] + [silence])
    audio.encode((round_ for _ in range(rounds)), SR, path, "mp3" if path.suffix == ".mp3" else "wav")
    return path


def in_child(script: str, *args: str) -> dict:
    """Run `script --peak-rss-child args…` in a fresh process (so its peak RSS is its own) and
    return the JSON figures it prints last."""
    out = subprocess.run([sys.executable, script, "--peak-rss-child", *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory so far: VmHWM, not ru_maxrss (getrusage keeps the
    peak of the parent process across fork and exec)."""
    status = Path("/proc/self/status").read_text()
    return round(int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024, 1)


def bench_main(benches: dict, child) -> None:
    """`bench/X.py [name …]` runs the named benches (all by default) in one scratch folder;
    `--peak-rss-child args…` is the child process of a memory bench."""
    if sys.argv[1:2] == ["--peak-rss-child"]:
        child(*sys.argv[2:])
        return
    chosen = sys.argv[1:] or list(benches)  # e.g. `bench/asr.py memory`
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            benches[name](Path(tmp))


def report(name: str, **figures) -> None:
    print(json.dumps({"bench": name, **figures}), flush=True)


def server_overhead(workdir: Path, repeats: int = 7) -> None:
    """Direct and served runs alternate, so that a change in the machine's load hits both."""
    path = speech_file(workdir / "overhead.wav", rounds=3, silence_seconds=0)
    model = asr_model.load(weights.whisper_model_dir())
    temperatures = TranscribeOptions().temperatures()

    def direct() -> float:
        started = time.perf_counter()
        segments, _ = model.whisper.transcribe(str(path), beam_size=5, temperature=temperatures)
        list(segments)
        return time.perf_counter() - started

    served_vs_direct("server_overhead", path, direct, "whisper", {"audio": data_uri(path)}, repeats=repeats)


def served_vs_direct(name: str, path: Path, direct, runner: str, inputs: dict, *, env=None, repeats: int = 7) -> None:
    """Real-time factors of `direct()` and of the same request to `runner` under the real Cog
    server, runs alternated so that a change in the machine's load hits both; the ratio."""
    with CogServer(runner, env=env) as server:
        server.wait_ready(300)
        url = f"{server.url('[::1]')}/predictions"

        def served() -> float:
            started = time.perf_counter()
            response = httpx.post(url, json={"input": inputs}, timeout=600).json()
            assert response["status"] == "succeeded", response.get("error")
            return time.perf_counter() - started

        direct(), served()  # warm both: the first request loads the worker's caches
        timings = [(direct(), served()) for _ in range(repeats)]
    duration = audio.probe(path).duration
    rtf_direct = statistics.median(d for d, _ in timings) / duration
    rtf_server = statistics.median(s for _, s in timings) / duration
    report(
        name,
        audio_seconds=round(duration, 1),
        rtf_direct=round(rtf_direct, 4),
        rtf_server=round(rtf_server, 4),
        ratio=round(rtf_server / rtf_direct, 3),
        # The fastest of each: the runs least disturbed by other work on a shared machine.
        ratio_of_fastest=round(min(s for _, s in timings) / min(d for d, _ in timings), 3),
    )


def batched_vs_sequential(workdir: Path) -> None:
    path = speech_file(workdir / "85s.wav", rounds=3, silence_seconds=1.0)
    model = asr_model.load(weights.whisper_model_dir())
    timings = {}
    for name, batch in (("sequential", 1), ("batched_8", 8)):
        runs = []
        for _ in range(3):
            result = transcribe(model, path, TranscribeOptions(batch_size=batch, vad_filter=batch > 1))
            runs.append(result.processing_seconds)
        timings[name] = statistics.median(runs)
    report(
        "batched_vs_sequential",
        audio_seconds=result.detected.duration,
        sequential_s=round(timings["sequential"], 2),
        batched_s=round(timings["batched_8"], 2),
        speedup=round(timings["sequential"] / timings["batched_8"], 2),
    )


def peak_rss_child(path: str) -> None:
    model = asr_model.load(weights.whisper_model_dir())
    result = transcribe(model, path, TranscribeOptions(vad_filter=True))
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "audio_seconds": result.detected.duration,
                      "processing_seconds": round(result.processing_seconds, 1)}))


def peak_memory(workdir: Path) -> None:
    figures = {}
    for minutes in (10, 60):
        # One round is ~28 s of speech plus silence, so both files are half speech.
        path = speech_file(workdir / f"{minutes}min.mp3", rounds=minutes * 2, silence_seconds=2.0)
        figures[minutes] = in_child(__file__, str(path))
    report(
        "peak_rss",
        rss_10min_mib=figures[10]["peak_rss_mib"],
        rss_60min_mib=figures[60]["peak_rss_mib"],
        audio_seconds=[figures[10]["audio_seconds"], figures[60]["audio_seconds"]],
        ratio=round(figures[60]["peak_rss_mib"] / figures[10]["peak_rss_mib"], 3),
    )


def wer_server_vs_engine(workdir: Path) -> None:
    """Word error rate against the reference transcripts, pooled over each set of files, and
    how many files get the very same segments (text, start, end) both ways."""
    model = asr_model.load(weights.whisper_model_dir())
    references = [normalize(c.text) for c in librivox()]
    sets = {
        "librivox": [c.wav for c in librivox()],
        "librivox_22k_edges": resampled_with_edges(workdir),
    }
    with CogServer("whisper") as server:
        server.wait_ready(300)
        url = f"{server.url('[::1]')}/predictions"
        for name, paths in sets.items():
            engine, served = [], []
            for path in paths:
                engine.append([(s.text, s.start, s.end) for s in engine_segments(model, path)])
                response = httpx.post(url, json={"input": {"audio": data_uri(path)}}, timeout=600).json()
                assert response["status"] == "succeeded", response.get("error")
                served.append([(s["text"], s["start"], s["end"]) for s in response["output"]["segments"]])

            def wer(transcripts):
                texts = [normalize(" ".join(text for text, _, _ in t)) for t in transcripts]
                return round(jiwer.wer(references, texts), 4)

            report(
                "wer_server_vs_engine",
                files=name,
                audio_seconds=round(sum(audio.probe(p).duration for p in paths), 1),
                wer_engine=wer(engine),
                wer_server=wer(served),
                identical_segments=f"{sum(e == s for e, s in zip(engine, served))}/{len(paths)}",
            )


BENCHES = {
    "overhead": server_overhead,
    "batched": batched_vs_sequential,
    "memory": peak_memory,
    "wer": wer_server_vs_engine,
}


if __name__ == "__main__":
    bench_main(BENCHES, peak_rss_child)
