"""The OpenVoice v2 engine on tiny random checkpoints in the published formats: strict loading,
output lengths from the predicted durations and the speed, the English frontend, bad input."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from openvoice_fixtures import SYMBOLS, VOCAB, openvoice_weights, write_bert  # noqa: F401  (fixture)
from saladcog.tts.checkpoint import CheckpointError
from saladcog.tts.openvoice.converter import load_converter
from saladcog.tts.openvoice.engine import MAX_TEXT_CHARS, PAUSE_SECONDS, OpenVoice, Settings
from saladcog.tts.openvoice.english_norm import normalize
from saladcog.tts.openvoice.g2p import CmuDict
from saladcog.tts.openvoice.melo import load_melo
from saladcog.tts.readable import TextError
from saladcog.tts.textsplit import split_sentences


@pytest.fixture(scope="module")
def engine(openvoice_weights):  # noqa: F811
    return OpenVoice(**openvoice_weights)


def _copy_with(src, tmp_path, edit):
    dst = tmp_path / "melo"
    shutil.copytree(src, dst)
    ckpt = torch.load(dst / "checkpoint.pth", weights_only=True)
    edit(ckpt["model"])
    torch.save(ckpt, dst / "checkpoint.pth")
    return dst


def test_checkpoints_load_strictly_with_old_weight_norm_keys(openvoice_weights):  # noqa: F811
    sd = torch.load(openvoice_weights["melo_dir"] / "checkpoint.pth", weights_only=True)["model"]
    assert any(k.endswith(".weight_g") for k in sd) and any(k.endswith(".weight_v") for k in sd)
    model = load_melo(openvoice_weights["melo_dir"] / "config.json", openvoice_weights["melo_dir"] / "checkpoint.pth")
    # Folded: weight = g * v / ||v|| per output channel of dec.resblocks.0.convs1.0.
    g, v = sd["dec.resblocks.0.convs1.0.weight_g"], sd["dec.resblocks.0.convs1.0.weight_v"]
    expected = g * v / v.flatten(1).norm(dim=1)[:, None, None]
    assert torch.allclose(model.dec.resblocks[0].convs1[0].weight, expected, atol=1e-6)
    conv_dir = openvoice_weights["openvoice_dir"] / "converter"
    load_converter(conv_dir / "config.json", conv_dir / "checkpoint.pth")


def test_renamed_key_fails_naming_it(openvoice_weights, tmp_path):  # noqa: F811
    def rename(sd):
        sd["enc_p.encoder.attn_layers.0.conv_q.weight_renamed"] = sd.pop("enc_p.encoder.attn_layers.0.conv_q.weight")

    melo = _copy_with(openvoice_weights["melo_dir"], tmp_path, rename)
    with pytest.raises(CheckpointError) as err:
        load_melo(melo / "config.json", melo / "checkpoint.pth")
    assert "missing key(s) enc_p.encoder.attn_layers.0.conv_q.weight" in str(err.value)
    assert "unexpected key(s) enc_p.encoder.attn_layers.0.conv_q.weight_renamed" in str(err.value)


def test_missing_and_misshapen_keys_fail(openvoice_weights, tmp_path):  # noqa: F811
    def edit(sd):
        del sd["dec.ups.1.weight_g"]
        sd["emb_g.weight"] = sd["emb_g.weight"][:10]

    melo = _copy_with(openvoice_weights["melo_dir"], tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"missing key\(s\) dec\.ups\.1\.weight_g.*shape mismatch for emb_g\.weight"):
        load_melo(melo / "config.json", melo / "checkpoint.pth")


def _inputs(engine, text):
    return engine.frontend(text)


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.0])
def test_audio_length_is_ceiled_durations_times_hop_and_follows_speed(engine, speed):
    melo = engine.melo
    inputs = _inputs(engine, "Hello world, the cat sat on the mat.")
    # With sdp_ratio 0 the log-durations are the deterministic predictor's: compute them directly.
    with torch.inference_mode():
        g = melo.emb_g(torch.tensor([0])).unsqueeze(-1)
        x, _, _, mask = melo.enc_p(inputs["phones"], inputs["tones"], inputs["languages"], inputs["bert"], inputs["ja_bert"], g)
        logw = melo.dp(x, mask, g)[0, 0]
    audio, durations = melo.infer(**inputs, speaker_id=0, sdp_ratio=0.0, length_scale=1 / speed,
                                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(durations, torch.ceil(torch.exp(logw) / speed).long())
    assert audio.numel() == int(durations.sum()) * melo.hop_length
    assert melo.hop_length == 16 and float(audio.abs().max()) < 1.0


def test_same_seed_same_audio_and_injected_noise(engine):
    inputs = _inputs(engine, "The cat sat.")
    a, d = engine.melo.infer(**inputs, speaker_id=1, generator=torch.Generator().manual_seed(5))
    b, _ = engine.melo.infer(**inputs, speaker_id=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # The same draws passed explicitly (sdp noise first, then the prior noise, frame-major) give the same audio.
    gen = torch.Generator().manual_seed(5)
    sdp = torch.randn(1, 2, inputs["phones"].shape[1], generator=gen)
    prior = torch.empty(1, int(d.sum()), 16).transpose(1, 2).normal_(generator=gen)
    c, _ = engine.melo.infer(**inputs, speaker_id=1, sdp_noise=sdp, prior_noise=prior)
    assert torch.equal(a, c)


def test_engine_pieces_pause_and_sample_rates(engine):
    text = " ".join(["Hello world, the cat sat on the mat and it is a voice of the world."] * 9)
    pieces = list(split_sentences(text))
    assert len(pieces) == 3 and all(len(p) <= 512 for p in pieces)
    for speed in (1.0, 2.0):
        chunks = list(engine.synthesize(text, "EN-US", Settings(speed=speed), seed=3))
        pause = int(44100 * PAUSE_SECONDS / speed)
        assert len(chunks) == 3
        for chunk in chunks:
            assert not chunk[-pause:].any()  # upstream's pause after every piece
            assert (chunk.size - pause) % engine.melo.hop_length == 0
    assert engine.output_rate(cloning=False) == 44100 and engine.output_rate(cloning=True) == 22050


def test_cloning_converts_at_the_converter_rate(engine):
    t = np.arange(22050 * 2) / 22050
    reference = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    se = engine.reference_se(reference)
    assert se.shape == (1, 16, 1)
    base = list(engine.synthesize("The cat sat on the mat.", "EN-AU", seed=4))
    cloned = list(engine.synthesize("The cat sat on the mat.", "EN-AU", seed=4, target_se=se))
    assert len(cloned) == 1 and cloned[0].size % engine.converter.hop_length == 0
    # 44.1 kHz in, resampled 2:1, STFT frames of 16 samples: the lengths agree to a frame.
    assert abs(cloned[0].size - math.ceil(base[0].size / 2)) < engine.converter.hop_length


def test_frontend_numbers_abbreviations_times_punctuation(engine):
    norm = normalize("Dr. Smith paid $3, at 10:05 pm!")
    assert norm == "doctor smith paid three dollars, at ten oh five p m!"
    ph = engine.frontend.g2p(norm)
    # From the dictionary entries: DOCTOR D AA1 K - T ER0, SMITH S M IH1 TH, PAID P EY1 D, THREE TH R IY1,
    # DOLLARS D AA1 - L ER0 Z, AT AE1 T, TEN T EH1 N, OH OW1, FIVE F AY1 V, P P IY1, M EH1 M; "," and "!" as themselves.
    assert ph.phones == ("_ d aa k t er s m ih th p ey d th r iy d aa l er z , ae t t eh n ow f ay V p iy eh m ! _").split()
    assert ph.tones == [0, 0, 2, 0, 0, 1, 0, 0, 2, 0, 0, 2, 0, 0, 0, 2, 0, 2, 0, 1, 0, 0, 2, 0, 0, 2, 0, 2, 0, 2, 0, 0, 2,
                        2, 0, 0, 0]
    assert ph.word2ph == [1, 5, 4, 3, 3, 5, 1, 2, 3, 1, 3, 2, 2, 1, 1]


def test_frontend_out_of_vocabulary_word_split_in_pieces(engine):
    ph = engine.frontend.g2p(normalize("Zorbly cat."))
    # "zorbly" is two WordPieces (zor ##bly) and not in the dictionary: g2p_en's GRU spells it
    # Z AO1 R B L IY0 (the same as g2p_en 2.1.0 itself); its 6 phones are shared 3 + 3 by the pieces.
    assert ph.phones == "_ z ao r b l iy k ae t . _".split()
    assert ph.tones == [0, 0, 2, 0, 0, 0, 1, 0, 2, 0, 0, 0]
    assert ph.word2ph == [1, 3, 3, 3, 1, 1]


def test_frontend_ids_blanks_and_bert_features(engine):
    out = engine.frontend("The cat.")
    phones = "_ dh ah k ae t . _".split()
    ids = [SYMBOLS.index(p) for p in phones]
    tones = [7, 7, 8, 7, 9, 7, 7, 7]  # EN offset 7: no digit -> 7, AH0 -> 8, AE1 -> 9
    blank = lambda seq: [0] + [v for x in seq for v in (x, 0)]  # noqa: E731
    assert out["phones"][0].tolist() == blank(ids)
    assert out["tones"][0].tolist() == blank(tones)
    assert out["languages"][0].tolist() == blank([2] * 8)
    n = 17
    assert out["bert"].shape == (1, 1024, n) and not out["bert"].any()
    ja = out["ja_bert"][0]
    assert ja.shape == (768, n)
    # word2ph after blanks: [CLS] 3, the 4, cat 6, "." 2, [SEP] 2: each token's BERT vector repeats.
    spans = [(0, 3), (3, 7), (7, 13), (13, 15), (15, 17)]
    for a, b in spans:
        assert torch.equal(ja[:, a:b], ja[:, a : a + 1].expand(-1, b - a))
    assert not torch.equal(ja[:, 0], ja[:, 3])


def test_frontend_word_the_tokenizer_cannot_piece_together_is_not_spelled_unk(engine):
    # "qqq" cannot be made of this vocabulary's pieces: BERT reads it as [UNK], which upstream
    # hands to g2p_en as the word "unk". It keeps its BERT position but gets no phones.
    assert engine.frontend.tokenizer.tokenize("the qqq cat.") == ["the", "[UNK]", "cat", "."]
    ph = engine.frontend.g2p(normalize("the qqq cat."))
    assert ph.phones == engine.frontend.g2p(normalize("the cat.")).phones == "_ dh ah k ae t . _".split()
    assert ph.word2ph == [1, 2, 0, 3, 1, 1]
    assert engine.frontend("the qqq cat.")["ja_bert"].shape[-1] == 17  # BERT and phones still agree


def test_typographic_punctuation_is_read_as_its_ascii_form(engine):
    # The test vocabulary knows "'" but not "\u2019": the splitter's ASCII form is what BERT reads.
    assert not engine.frontend.readable("\u2019")
    clean = np.concatenate(list(engine.synthesize("It's the cat. it is.", "EN-US", seed=2)))  # upstream: \uff1b ends a sentence
    typographic = np.concatenate(list(engine.synthesize("It\u2019s the cat\uff1b it is.", "EN-US", seed=2)))
    assert np.array_equal(typographic, clean)


@pytest.mark.parametrize(
    "text",
    ["The cat \U0001F600 sat.", "The cat\x07\u200b sat.\ufeff", "The cat \u05e9\u05dc\u05d5\u05dd sat.",
     "The \u0645\u0631\u062d\u0628\u0627 cat sat. \U0001F389"],
    ids=["emoji", "control", "hebrew", "arabic"],
)
def test_unreadable_characters_inside_text_are_left_out(engine, text):
    clean = np.concatenate(list(engine.synthesize("The cat sat.", "EN-US", seed=2)))
    assert np.array_equal(np.concatenate(list(engine.synthesize(text, "EN-US", seed=2))), clean)


@pytest.mark.parametrize(
    "text, named",
    [
        ("\U0001F600\U0001F389 ", "'\U0001F600' (U+1F600), '\U0001F389' (U+1F389)"),
        ("\x01\x02", "'\\x01' (U+0001), '\\x02' (U+0002)"),
        ("\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "U+0645"),
        ("\u05e9\u05dc\u05d5\u05dd!", "U+05E9"),
    ],
    ids=["emoji", "control", "arabic", "hebrew"],
)
def test_text_with_nothing_readable_is_refused_naming_it(engine, text, named):
    with pytest.raises(TextError, match=r"nothing this model can read \(it reads English in Latin letters\)") as refused:
        next(engine.synthesize(text, "EN-US"))
    assert named in str(refused.value)


def test_letters_the_tokenizer_knows_but_g2p_cannot_say_are_nothing_to_speak(openvoice_weights, tmp_path):  # noqa: F811
    # bert-base-uncased knows many Arabic and Cyrillic letters; g2p keeps only a-z. With a
    # vocabulary that knows "\u0436", that letter is read (and silent) but alone is refused.
    engine = OpenVoice(**{**openvoice_weights, "bert_dir": write_bert(tmp_path / "bert", VOCAB + ["\u0436"])})
    assert engine.frontend.readable("\u0416") and not engine.frontend.speakable("\u0416")
    assert engine.frontend.readable("\u00e1") and engine.frontend.speakable("\u00e1")  # "a" once accents go
    assert not engine.frontend.readable("\u0411") and not engine.frontend.readable("\x00")
    with pytest.raises(TextError, match="nothing this model can read .*'\u0416' \\(U\\+0416\\)"):
        next(engine.synthesize("\u0416\u0436!", "EN-US"))
    assert next(engine.synthesize("The \u0436 cat.", "EN-US")).size > 0


def test_cmudict_reads_both_layouts(tmp_path):
    rep = CmuDict.load(_write(tmp_path / "a.rep", True))
    dic = CmuDict.load(_write(tmp_path / "a.dict", False))
    assert rep["DOLLARS"] == dic["DOLLARS"] == ["D", "AA1", "L", "ER0", "Z"]
    assert dic["READ"] == ["R", "EH1", "D"]  # first pronunciation; read(2) ignored


def _write(path, rep):
    if rep:
        lines = [";;; header"] * 48 + ["DOLLARS  D AA1 - L ER0 Z", "READ  R EH1 D"]
    else:
        lines = [";;; comment", "dollars D AA1 L ER0 Z", "read R EH1 D", "read(2) R IY1 D # variant"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "text, speaker, message",
    [
        ("", "EN-US", "text is empty"),
        ("   \n ", "EN-US", "text is empty"),
        ("x" * 1_000_000, "EN-US", f"text too long: 1000000 characters, at most {MAX_TEXT_CHARS}"),
        ("... !!! ,,,", "EN-US", "nothing to say"),
        ("Hello.", "EN-XX", "unknown speaker 'EN-XX'"),
    ],
)
def test_bad_text_and_speaker(engine, text, speaker, message):
    with pytest.raises(ValueError, match=message):
        list(engine.synthesize(text, speaker))


def test_silent_or_short_reference_is_refused(engine):
    with pytest.raises(ValueError, match="reference audio is silent"):
        engine.reference_se(np.zeros(22050 * 3, np.float32))
    with pytest.raises(ValueError, match="reference audio too short"):
        engine.reference_se(np.ones(1000, np.float32) * 0.1)
