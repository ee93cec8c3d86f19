"""Tiny random OpenVoice v2 / MeloTTS-English checkpoints in the published file formats.

Directory layouts and file formats are those of myshell-ai/MeloTTS-English, myshell-ai/OpenVoiceV2
and bert-base-uncased; only the sizes are small. Checkpoints store weight-normed layers as
`weight_g`/`weight_v` like the published files (the key sets were checked against upstream's
classes: 1051 synthesizer keys, 486 converter keys at full size).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saladcog.tts.openvoice.checkpoint import expected_keys
from saladcog.tts.openvoice.converter import ConverterConfig, ToneColorConverter
from saladcog.tts.openvoice.engine import se_file_name
from saladcog.tts.openvoice.melo import MeloConfig, SynthesizerTrn

SYMBOLS = ["_", "AA", "E", "V", "a", "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f",
           "g", "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh",
           "uw", "w", "y", "z", "zh", "!", "?", "…", ",", ".", "'", "-", "SP", "UNK"]
SPK2ID = {"EN-US": 0, "EN-BR": 1, "EN_INDIA": 2, "EN-AU": 3, "EN-Default": 4}

MELO_MODEL = dict(inter_channels=16, hidden_channels=16, filter_channels=32, n_heads=2, n_layers=3,
                  n_layers_trans_flow=3, kernel_size=3, p_dropout=0.1, resblock="1", resblock_kernel_sizes=[3, 7],
                  resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], upsample_rates=[4, 4], upsample_initial_channel=32,
                  upsample_kernel_sizes=[8, 8], gin_channels=16, use_spk_conditioned_encoder=True,
                  use_noise_scaled_mas=True, use_duration_discriminator=True)
CONVERTER_MODEL = dict(zero_g=True, inter_channels=16, hidden_channels=16, filter_channels=32, n_heads=2, n_layers=2,
                       kernel_size=3, p_dropout=0.1, resblock="1", resblock_kernel_sizes=[3, 7],
                       resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], upsample_rates=[4, 4],
                       upsample_initial_channel=32, upsample_kernel_sizes=[8, 8], gin_channels=16)

# Words of the frontend tests and their CMUdict 0.6 entries (cmudict.rep layout, syllables split by " - ").
CMU_ENTRIES = {
    "DOCTOR": "D AA1 K - T ER0", "SMITH": "S M IH1 TH", "PAID": "P EY1 D", "THREE": "TH R IY1",
    "DOLLARS": "D AA1 - L ER0 Z", "AT": "AE1 T", "TEN": "T EH1 N", "OH": "OW1", "FIVE": "F AY1 V", "P": "P IY1",
    "M": "EH1 M", "THE": "DH AH0", "CAT": "K AE1 T", "SAT": "S AE1 T", "ON": "AA1 N", "MAT": "M AE1 T",
    "HELLO": "HH AH0 - L OW1", "WORLD": "W ER1 L D", "TWENTY": "T W EH1 N - T IY0", "FIRST": "F ER1 S T",
    "VOICE": "V OY1 S", "A": "AH0", "OF": "AH1 V", "AND": "AH0 N D", "IT": "IH1 T", "IS": "IH1 Z",
}
# WordPiece vocabulary: special tokens, punctuation, the words above, and pieces of an OOV word.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "!", "?", "'", "-", ";", ":"] + \
        [w.lower() for w in CMU_ENTRIES] + ["zor", "##bly", "##s"]


def _official_state_dict(build, seed: int) -> dict[str, torch.Tensor]:
    """The state dict of `build()` with random weights; the seed covers the module's own init
    (biases keep it) as well as the draws below, so the same seed writes the same file."""
    torch.manual_seed(seed)
    model = build()
    sd = {}
    names = list(expected_keys(model))
    for name, tensor in zip(names, model.state_dict().values()):
        sd[name] = torch.randn_like(tensor) * 0.1 if name.endswith(("weight_v", "weight")) else tensor.clone()
        if name.endswith(("gamma", "weight_g")):
            sd[name] = 1 + 0.05 * torch.randn_like(tensor)
    return sd


def write_melo(root: Path, seed: int = 0, data: dict | None = None, model: dict | None = None) -> Path:
    """`data` and `model` override entries of the config's sections (the benchmark's real hop sizes)."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"train": {"segment_size": 16384}, "num_tones": 16, "num_languages": 10, "symbols": SYMBOLS,
              "data": {"sampling_rate": 44100, "filter_length": 64, "hop_length": 16, "win_length": 64,
                       "n_mel_channels": 128, "add_blank": True, "n_speakers": 256, "spk2id": SPK2ID, **(data or {})},
              "model": {**MELO_MODEL, **(model or {})}}
    (root / "config.json").write_text(json.dumps(config))
    cfg = MeloConfig.from_json(root / "config.json")
    state = _official_state_dict(lambda: SynthesizerTrn(cfg), seed)
    # Random weights predict ~1 frame per symbol; a duration bias of +2 (log frames) makes the
    # tiny model speak at a plausible rate, so every output is long enough to decode and check.
    state["dp.proj.bias"] = state["dp.proj.bias"] + 2.0
    torch.save({"model": state, "iteration": 1}, root / "checkpoint.pth")
    return root


def write_openvoice(root: Path, seed: int = 1, data: dict | None = None, model: dict | None = None) -> Path:
    conv = root / "converter"
    conv.mkdir(parents=True, exist_ok=True)
    config = {"_version_": "v2", "data": {"sampling_rate": 22050, "filter_length": 64, "hop_length": 16,
                                          "win_length": 64, "n_speakers": 0, **(data or {})},
              "model": {**CONVERTER_MODEL, **(model or {})}}
    (conv / "config.json").write_text(json.dumps(config))
    config = ConverterConfig.from_json(conv / "config.json")
    torch.save({"model": _official_state_dict(lambda: ToneColorConverter(config), seed)}, conv / "checkpoint.pth")
    ses = root / "base_speakers" / "ses"
    ses.mkdir(parents=True, exist_ok=True)
    for i, speaker in enumerate(SPK2ID):
        torch.save(torch.randn(1, CONVERTER_MODEL["gin_channels"], 1, generator=torch.Generator().manual_seed(i)),
                   ses / se_file_name(speaker))
    return root


def write_bert(root: Path, vocab: list[str] = VOCAB) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(2)
    # hidden_size stays 768: the synthesizer's ja_bert_proj expects bert-base features.
    config = BertConfig(vocab_size=len(vocab), hidden_size=768, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config, add_pooling_layer=False).save_pretrained(root)
    BertTokenizer(str(root / "vocab.txt"), do_lower_case=True).save_pretrained(root)
    return root


def write_cmudict(path: Path) -> Path:
    header = [f";;; header line {i}" for i in range(1, 49)]  # entries start on line 49, as in cmudict.rep
    path.write_text("\n".join(header + [f"{w}  {p}" for w, p in sorted(CMU_ENTRIES.items())]) + "\n")
    return path


def write_all(root: Path) -> dict[str, Path]:
    return {"melo_dir": write_melo(root / "melo"), "openvoice_dir": write_openvoice(root / "openvoice"),
            "bert_dir": write_bert(root / "bert"), "cmudict_path": write_cmudict(root / "cmudict.rep")}


def server_env(weights: dict[str, Path]) -> dict[str, str]:
    """The environment that points the OpenVoice runner at these weights."""
    return {
        "OPENVOICE_MELO_DIR": str(weights["melo_dir"]),
        "OPENVOICE_DIR": str(weights["openvoice_dir"]),
        "OPENVOICE_BERT_DIR": str(weights["bert_dir"]),
        "OPENVOICE_CMUDICT": str(weights["cmudict_path"]),
    }


@pytest.fixture(scope="session")
def openvoice_weights(tmp_path_factory) -> dict[str, Path]:
    """The tiny weights in the published layouts, written once per test session."""
    return write_all(tmp_path_factory.mktemp("openvoice-weights"))
