"""MetaVoice-1B engine on tiny random checkpoints written in the official formats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from saladcog import audio
from saladcog.tts.checkpoint import CheckpointError
from saladcog.tts.metavoice import speaker_encoder as se
from saladcog.tts.metavoice.engine import SAMPLE_RATE, MetaVoice, TextError
from saladcog.tts.metavoice.generate import SamplingParams, generate, unflatten
from saladcog.tts.metavoice.gpt import load_gpt
from saladcog.tts.metavoice.nar import sample_codes
from saladcog.tts.metavoice.text import split_text
from saladcog.tts.metavoice.tokenizer import BPETokenizer, normalize_text
from tests import metavoice_tiny as tiny

CLIP = Path(__file__).parent / "data" / "speech" / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny.write_all(tmp_path_factory.mktemp("metavoice"))


@pytest.fixture(scope="module")
def engine(weights):
    from transformers import EncodecModel

    first, first_meta = load_gpt(weights.first)
    second, second_meta = load_gpt(weights.second)
    codec = EncodecModel.from_pretrained(weights.encodec)
    return MetaVoice(first, first_meta, second, second_meta, se.load_speaker_encoder(weights.speaker), codec)


@pytest.fixture(scope="module")
def voice(engine):
    return engine.speaker_embedding(CLIP)


# ---- strict loading -------------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, edit) -> Path:
    ckpt = torch.load(src, weights_only=False)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def test_loads_compiled_prefix_and_every_weight_equals_the_checkpoint(weights):
    model, meta = load_gpt(weights.first)
    saved = torch.load(weights.first, weights_only=False)["model"]
    assert all(k.startswith("_orig_mod.") for k in saved)
    loaded = model.state_dict()
    assert set(loaded) == {k[len("_orig_mod."):] for k in saved}
    for k, v in saved.items():
        assert torch.equal(loaded[k[len("_orig_mod."):]], v), k
    assert meta["tokenizer"]["offset"] == tiny.FIRST_OFFSET


def test_renamed_key_fails_naming_both_keys(weights, tmp_path):
    old, new = "transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.qkv.weight"

    def rename(ckpt):
        ckpt["model"][new] = ckpt["model"].pop(old)

    path = _rewrite(weights.second, tmp_path / "second_stage.pt", rename)
    with pytest.raises(CheckpointError) as e:
        load_gpt(path)
    assert f"missing key(s) {old}" in str(e.value)
    assert f"unexpected key(s) {new}" in str(e.value)


def test_wrong_shape_and_unknown_model_args_fail(weights, tmp_path):
    def shrink(ckpt):
        ckpt["model"]["transformer.wpe.weight"] = ckpt["model"]["transformer.wpe.weight"][:10]

    with pytest.raises(CheckpointError, match=r"shape mismatch for transformer\.wpe\.weight \(file \(10, "):
        load_gpt(_rewrite(weights.second, tmp_path / "a.pt", shrink))

    def extra_arg(ckpt):
        ckpt["model_args"]["rotary"] = True

    with pytest.raises(CheckpointError, match="unknown model_args in checkpoint: rotary"):
        load_gpt(_rewrite(weights.second, tmp_path / "b.pt", extra_arg))


def test_speaker_encoder_strict_but_ignores_ge2e_training_scalars(weights, tmp_path):
    se.load_speaker_encoder(weights.speaker)  # carries similarity_weight/bias: accepted

    def drop(ckpt):
        del ckpt["model_state"]["lstm.bias_hh_l2"]

    with pytest.raises(CheckpointError, match="missing key\\(s\\) lstm.bias_hh_l2"):
        se.load_speaker_encoder(_rewrite(weights.speaker, tmp_path / "s.pt", drop))


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "first_stage.pt"
    bad.write_text("not a pickle")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_gpt(bad)


# ---- first stage ------------------------------------------------------------------------------


def _first(weights):
    model, meta = load_gpt(weights.first)
    return model, BPETokenizer.from_meta(meta).encode("the the")


def test_generation_stops_right_after_the_end_token(weights, voice):
    model, prompt = _first(weights)
    params = SamplingParams()
    free = generate(model, prompt, voice.view(1, -1), params, torch.Generator().manual_seed(7), max_new_tokens=30)
    # Declare as end token the first token that appears for the first time at step >= 5: the same
    # draws must then stop exactly there, with that token last.
    k = next(i for i in range(5, 30) if free[i] not in free[:i])
    stopped = generate(model, prompt, voice.view(1, -1), params, torch.Generator().manual_seed(7),
                       end_token=free[k])
    assert stopped == free[: k + 1]


def test_generation_stops_at_token_limit_and_block_size(weights, voice):
    model, prompt = _first(weights)
    out = generate(model, prompt, voice.view(1, -1), SamplingParams(), torch.Generator().manual_seed(1),
                   max_new_tokens=7)
    assert len(out) == 7
    full = generate(model, prompt, voice.view(1, -1), SamplingParams(), torch.Generator().manual_seed(1))
    if 2048 not in full:
        assert len(full) == model.config.block_size - len(prompt)
    assert full[:7] == out
    with pytest.raises(ValueError, match="the first stage holds at most"):
        generate(model, [2050] * model.config.block_size, voice.view(1, -1), SamplingParams())


def test_kv_cache_gives_the_same_tokens_as_full_recompute(weights, voice):
    model, prompt = _first(weights)
    args = (model, prompt, voice.view(1, -1), SamplingParams(2.0, 0.8, 0.9))
    cached = generate(*args, torch.Generator().manual_seed(3), max_new_tokens=25)
    plain = generate(*args, torch.Generator().manual_seed(3), max_new_tokens=25, use_cache=False)
    assert cached == plain


def test_unflatten_separates_codebooks_and_truncates():
    c1, c2 = unflatten([5, 1024 + 7, 6, 1024 + 8, 9, 2048])
    assert (c1, c2) == ([5, 6], [7, 8])


# ---- second stage and decode -----------------------------------------------------------------


def test_second_stage_and_encodec_give_expected_length_at_24khz(engine, voice):
    text_ids = engine.second_tokenizer.encode("the the")  # 4 ids
    c1 = list(range(100))
    c2 = list(range(500, 600))
    codes = sample_codes(engine.second_stage, text_ids, c1, c2, voice.view(1, 1, -1),
                         generator=torch.Generator().manual_seed(0))
    assert codes.shape == (8, 100)
    assert codes[0].tolist() == c1 and codes[1].tolist() == c2
    assert int(codes.max()) < 1024
    wav = engine.decode(codes)
    assert SAMPLE_RATE == 24000 and wav.dtype == np.float32
    assert wav.shape == (100 * 320,)
    # Past 1024 positions (text + codes + pad) the second stage cuts, as upstream does.
    long = sample_codes(engine.second_stage, text_ids, [1] * 1100, [2] * 1100, voice.view(1, 1, -1),
                        generator=torch.Generator().manual_seed(0))
    assert long.shape[1] <= 1024 - len(text_ids)


def test_temperature_reaches_the_first_stage_only(engine, voice):
    """Upstream samples the second stage at temperature 1.0 whatever the request's temperature."""
    params = SamplingParams(temperature=0.5)
    text = engine.check_text("The cat sat on the mat.")
    emb = voice.to(engine.device)

    def second_stage_at(temperature: float | None) -> torch.Tensor:
        gen = engine.generator(5)
        c1, c2 = unflatten(generate(engine.first_stage, engine.tokenizer.encode(text), emb.view(1, -1), params, gen))
        assert c1, "the tiny first stage must say something for this test to mean anything"
        extra = {} if temperature is None else {"temperature": temperature}
        return sample_codes(engine.second_stage, engine.second_tokenizer.encode(text), c1, c2, emb.view(1, 1, -1),
                            top_k=200, generator=gen, **extra)

    spoken = engine.codes(text, emb, params, engine.generator(5))
    assert torch.equal(spoken, second_stage_at(None))  # the sampler's default, 1.0
    assert torch.equal(spoken, second_stage_at(1.0))
    assert not torch.equal(spoken, second_stage_at(0.5))  # what the engine did before: tells them apart


def test_same_seed_same_audio_other_seed_differs(engine, voice):
    a = engine.synthesize("The cat sat.", voice, seed=11)
    b = engine.synthesize("The cat sat.", voice, seed=11)
    c = engine.synthesize("The cat sat.", voice, seed=12)
    assert a.size > 0 and a.size % 320 == 0
    assert np.array_equal(a, b)
    assert not (a.shape == c.shape and np.array_equal(a, c))


def test_long_text_is_spoken_piece_by_piece(engine, voice):
    text = "One. Two! Three? Four. Five."
    assert list(split_text(text)) == ["One. Two!", "Three? Four.", "Five."]
    pieces = engine.stream(text, voice, seed=1)
    assert not isinstance(pieces, list)  # a generator: one piece in memory at a time
    assert len([p for p in pieces if p.size]) == 3


def test_split_cuts_an_overlong_sentence_at_a_clause():
    sentence = ("word " * 30).strip() + ", " + ("more " * 30).strip() + "."
    parts = list(split_text(sentence, limit=160))
    assert parts[0] == ("word " * 30).strip() + ","
    assert all(len(p) <= 160 for p in parts) and " ".join(parts) == sentence


# ---- text and tokenizer ----------------------------------------------------------------------


def test_normalisation_follows_upstream_table():
    assert normalize_text("\u201cHi\u201d\u2026\tthere  *now*\u2014ok") == '"Hi"... there now -ok'


@pytest.mark.parametrize("text", ["Brand\u2122 new", "Brand \U0001F600 new", "Brand\x07 new\x00", "Brand \u05e9\u05dc\u05d5\u05dd new"])
def test_unreadable_characters_are_left_out(text):
    # upstream refuses the whole text for one character above U+00FF and speaks control characters
    assert normalize_text(text) == "Brand new"


@pytest.mark.parametrize(
    "text, named",
    [
        ("\U0001F600\U0001F389", "'\U0001F600' (U+1F600), '\U0001F389' (U+1F389)"),
        ("\x01\x02 \x7f", "'\\x01' (U+0001), '\\x02' (U+0002), '\\x7f' (U+007F)"),
        ("\u0645\u0631\u062d\u0628\u0627", "U+0645"),
        ("\u05e9\u05dc\u05d5\u05dd!", "U+05E9"),
        ("\u65e5\u672c", "U+65E5"),
    ],
    ids=["emoji", "control", "arabic", "hebrew", "japanese"],
)
def test_text_with_nothing_readable_is_refused_naming_it(engine, voice, text, named):
    with pytest.raises(TextError, match="nothing this model can read") as refused:
        next(engine.stream(text, voice))
    assert named in str(refused.value)


def test_bpe_ids_by_hand():
    tok = BPETokenizer(**tiny.tokenizer_meta(tiny.FIRST_OFFSET))
    # "the": t+h -> "th" (rank 256, lowest) then "th"+e -> "the" (258); " the" keeps the space
    # byte 32; then end-of-text 259; everything + offset 2049.
    assert tok.encode("the the") == [258 + 2049, 32 + 2049, 258 + 2049, 259 + 2049]
    # "hehe" is one pre-token: h+e -> "he" (257) twice; no "hehe" merge exists.
    assert tok.encode("hehe") == [257 + 2049, 257 + 2049, 2308]
    assert tok.eot_token == 2308
    with pytest.raises(TextError, match="reserved token"):
        tok.encode("hi <|endoftext|>")


# ---- speaker encoder ---------------------------------------------------------------------------


def test_partial_windows_by_hand():
    # 1 s: ceil(16001/160)=101 frames, 1 window even though it covers 62.5 %.
    assert se.partial_windows(16000) == [0]
    # 3 s: 301 frames, starts below 301-160+77+1=219 -> 0, 77, 154; last covers 91 %.
    assert se.partial_windows(48000) == [0, 77, 154]
    # 2.5 s: 251 frames -> 0, 77, 154, but the last covers (40000-24640)/25600 = 60 % < 75 %.
    assert se.partial_windows(40000) == [0, 77]


def test_mel_filters_are_slaney_triangles():
    f = se.mel_filters()
    assert f.shape == (40, 201)
    # Below 1 kHz Slaney's scale is linear (200/3 Hz per mel); 0-8 kHz spans 45.245 mel over 41
    # steps, so each low filter is 2 * 1.10353 * 66.667 = 147.1 Hz wide, 2/147.1 high, area 1.
    step_hz = (15 + math.log(8) * 27 / math.log(6.4)) / 41 * 200 / 3
    for i in range(11):
        peak_hz = int(np.argmax(f[i])) * 40.0
        assert abs(peak_hz - (i + 1) * step_hz) <= 20.0
        assert f[i].max() <= 2 / (2 * step_hz) + 1e-6
        assert abs(f[i].sum() * 40.0 - 1.0) < 0.15


def test_mel_spectrogram_of_a_bin_centred_sine_by_hand():
    # A 1 kHz sine sits on FFT bin 25 (40 Hz bins). A periodic Hann window of 400 samples has
    # DFT weights 200 at the centre bin and -100 at its neighbours, so the power is
    # (A/2 * 200)^2 at bin 25 and (A/2 * 100)^2 at bins 24 and 26; nothing else (no log).
    A = 0.5
    t = np.arange(16000) / 16000
    mel = se.mel_spectrogram((A * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert mel.shape == (101, 40)
    f = se.mel_filters()
    expected = f[:, 25] * (A * 100) ** 2 + (f[:, 24] + f[:, 26]) * (A * 50) ** 2
    np.testing.assert_allclose(mel[50], expected, rtol=1e-3, atol=1e-3)


def test_trim_by_hand():
    # 1 s silence, 1 s of 1 kHz sine, 1 s silence. Frames i cover [512 i - 1024, 512 i + 1024);
    # frame 30 is the first to overlap the tone (by 384 samples, -7 dB), frame 64 the last
    # (256 samples, -9 dB), both above -20 dB: keep [30*512, 65*512).
    wav = np.zeros(48000, dtype=np.float32)
    wav[16000:32000] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    trimmed = se.trim_silence(wav)
    assert len(trimmed) == 65 * 512 - 30 * 512
    assert np.array_equal(trimmed, wav[15360:33280])


def test_embedding_is_unit_256(voice):
    assert voice.shape == (256,) and abs(float(voice.norm()) - 1) < 1e-5


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [("", "empty"), ("   \n\t ", "empty"), ("***", "only punctuation")])
def test_empty_text_is_refused(engine, voice, text, message):
    with pytest.raises(TextError, match=message):
        next(engine.stream(text, voice))


def test_unreadable_characters_inside_text_are_not_spoken(engine, voice):
    clean = engine.synthesize("The cat sat.", voice, seed=11)
    assert clean.size > 0
    for text in ["The cat \U0001F600 sat.", "The cat\x07 sat.", "The \u0645\u0631\u062d\u0628\u0627 cat sat."]:
        assert np.array_equal(engine.synthesize(text, voice, seed=11), clean), repr(text)


def test_megabyte_of_text_is_refused_before_any_model_time(engine, voice):
    with pytest.raises(TextError, match="1048576 characters long; at most 5000"):
        next(engine.stream("a" * 1024 * 1024, voice))


def test_reference_that_is_not_audio(engine, tmp_path):
    bad = tmp_path / "voice.wav"
    bad.write_text("this is not audio at all\n" * 100)
    with pytest.raises(audio.AudioError, match="voice.wav"):
        engine.speaker_embedding(bad)


def test_reference_shorter_than_one_second(engine, tmp_path):
    short = audio.encode(audio.decode(CLIP, 16000)[:8000], 16000, tmp_path / "short.wav")
    with pytest.raises(audio.AudioError, match="too short: 0.50 s, at least 1 s"):
        engine.speaker_embedding(short)


def test_silent_reference(engine, tmp_path):
    silent = audio.encode(np.zeros(32000, dtype=np.float32), 16000, tmp_path / "silent.wav")
    with pytest.raises(audio.AudioError, match="silent"):
        engine.speaker_embedding(silent)
