"""OpenVoice v2 on CPU with real-size random weights: words/s per stage and peak memory vs text length.

    python bench/openvoice.py [--words 300] [--long-words 1000 2000]

Stages, timed separately on the same text: frontend + BERT (bert-base size), MeloTTS synthesizer,
tone colour converter. Then the whole engine (synthesize + convert, streamed to a WAV file) on
longer texts, with peak RSS read from the kernel: flat peaks show memory does not grow with length.
Weights are random (the published files are not reachable here); sizes and op counts are real.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1] / "tests")]

from openvoice_fixtures import CMU_ENTRIES, SPK2ID, SYMBOLS, VOCAB, _official_state_dict, write_cmudict  # noqa: E402
from saladcog import audio  # noqa: E402
from saladcog.tts.converter import ConverterConfig, ToneColorConverter  # noqa: E402
from saladcog.tts.melo import MeloConfig, SynthesizerTrn  # noqa: E402
from saladcog.tts.openvoice import OpenVoice, se_file_name  # noqa: E402
from saladcog.tts.textsplit import split_sentences  # noqa: E402

WORDS = [w.lower() for w in CMU_ENTRIES]


def write_real_size(root: Path) -> dict[str, Path]:
    from transformers import BertConfig, BertModel, BertTokenizer

    melo = root / "melo"
    melo.mkdir(parents=True)
    (melo / "config.json").write_text(json.dumps({
        "num_tones": 16, "num_languages": 10, "symbols": SYMBOLS,
        "data": {"sampling_rate": 44100, "filter_length": 2048, "hop_length": 512, "add_blank": True,
                 "n_speakers": 256, "spk2id": SPK2ID},
        "model": {"resblock": "1"}}))  # every other size: the dataclass defaults = the published config
    torch.save({"model": _official_state_dict(SynthesizerTrn(MeloConfig.from_json(melo / "config.json")), 0)},
               melo / "checkpoint.pth")
    conv = root / "openvoice" / "converter"
    conv.mkdir(parents=True)
    (conv / "config.json").write_text(json.dumps({"data": {"sampling_rate": 22050, "n_speakers": 0},
                                                  "model": {"resblock": "1"}}))
    torch.save({"model": _official_state_dict(ToneColorConverter(ConverterConfig()), 1)}, conv / "checkpoint.pth")
    ses = root / "openvoice" / "base_speakers" / "ses"
    ses.mkdir(parents=True)
    for s in SPK2ID:
        torch.save(torch.randn(1, 256, 1) * 0.1, ses / se_file_name(s))
    bert = root / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertModel(BertConfig(vocab_size=len(VOCAB)), add_pooling_layer=False).save_pretrained(bert)  # bert-base sizes
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    return {"melo_dir": melo, "openvoice_dir": root / "openvoice", "bert_dir": bert,
            "cmudict_path": write_cmudict(root / "cmudict.rep")}


def text_of(n_words: int) -> str:
    words = [WORDS[(i * 7) % len(WORDS)] for i in range(n_words)]
    return " ".join(w + ("." if i % 12 == 11 else ",") if i % 6 == 5 else w for i, w in enumerate(words)) + "."


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--long-words", type=int, nargs="*", default=[1000, 2000])
    args = parser.parse_args()
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
