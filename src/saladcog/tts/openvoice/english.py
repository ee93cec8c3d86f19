"""MeloTTS's English text frontend: text piece -> phone ids, tones, language ids and BERT features.

Steps (upstream `melo/text/english.py`, `english_bert.py`, `utils.get_text_for_tts_infer`):
normalise; WordPiece-tokenise with the bert-base-uncased tokenizer and rejoin "##" pieces into
words; phones from the CMU dictionary, else g2p_en; a word's phones spread over its pieces
(`word2ph`); "_" pads for [CLS]/[SEP]; symbol ids, tones offset for English, blanks interspersed;
BERT layer -3 hidden states repeated per phone.

What the frontend cannot read is left out rather than spoken: `readable` rejects control
characters and any character the BERT tokenizer does not know (emoji, most other scripts), which
upstream turns into "[UNK]" and g2p spells "unk"; a whole word the tokenizer cannot piece
together is still "[UNK]" and gets no phones. Letters of other scripts that the tokenizer does
know were already silent (g2p keeps only a-z) and count as nothing to speak (`speakable`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import unicodedata

import torch

from saladcog.tts.openvoice.english_norm import normalize
from saladcog.tts.openvoice.g2p import ARPA, CmuDict, GruG2p, oov_phones

EN_TONE_OFFSET = 7  # tones 0-5 Chinese, 6 Japanese pads, then English: 7 + (0 none, 1-3 stress 0-2)
EN_LANGUAGE_ID = 2
BERT_LAYER = -3  # hidden_states[-3]: the output of encoder layer 10 of 12

_REPLACE = {"：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",", "...": "…", "v": "V"}


@dataclasses.dataclass
class Phonemes:
    phones: list[str]
    tones: list[int]  # 0 = no stress digit, d + 1 for ARPAbet stress d
    word2ph: list[int]  # phones per WordPiece token, [CLS] and [SEP] included


def split_tone(phone: str) -> tuple[str, int]:
    if phone[-1:].isdigit():
        return phone[:-1].lower(), int(phone[-1]) + 1
    return phone.lower(), 0


def distribute(n_phones: int, n_pieces: int) -> list[int]:
    """Spread a word's phones over its pieces, the first `n_phones % n_pieces` getting one more."""
    base, extra = divmod(n_phones, n_pieces)
    return [base + (i < extra) for i in range(n_pieces)]


class EnglishFrontend:
    def __init__(self, bert_dir: str | os.PathLike, cmudict: CmuDict, symbols: list[str], add_blank: bool = True,
                 gru: GruG2p | None = None):
        from transformers import AutoTokenizer, BertModel
        from transformers.utils import logging as hf_logging

        self.tokenizer = AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
        # bert-base-uncased also holds pooler and masked-LM head weights, unused here: keep the
        # load report quiet rather than print a table of "unexpected" keys on every start.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            self.bert = BertModel.from_pretrained(bert_dir, local_files_only=True, add_pooling_layer=False).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
        self.cmu = cmudict
        self.gru = gru or GruG2p()
        self.symbols = symbols
        self.add_blank = add_blank
        self.symbol_to_id = {s: i for i, s in enumerate(symbols)}
        # A text has few distinct characters: remember the tokenizer's verdict on each, boundedly.
        self._known = functools.lru_cache(maxsize=4096)(lambda c: self.tokenizer.tokenize(c) != [self.tokenizer.unk_token])

    def readable(self, c: str) -> bool:
        """Whether `c` reaches the model as something other than an unknown token."""
        if " " <= c <= "~" or c.isspace():
            return True  # bert-base-uncased knows every printable ASCII character
        return unicodedata.category(c)[0] != "C" and self._known(c)

    @staticmethod
    def speakable(c: str) -> bool:
        """Letters and digits the English g2p gives phones: Latin letters (accents are stripped) and 0-9."""
        return c.isalnum() and ("0" <= c <= "9" or "LATIN" in unicodedata.name(c, ""))

    def _symbol(self, phone: str) -> str:
        phone = _REPLACE.get(phone, phone)
        return phone if phone in self.symbol_to_id else "UNK"

    def g2p(self, norm_text: str) -> Phonemes:
        groups: list[list[str]] = []
        for token in self.tokenizer.tokenize(norm_text):
            # Upstream treats any token starting with "#" as a continuation and drops its "#"s.
            if token.startswith("#") and groups:
                groups[-1].append(token.replace("#", ""))
            else:
                groups.append([token.replace("#", "") if token.startswith("#") else token])
        phones, tones, word2ph = ["_"], [0], [1]
        for group in groups:
            word = "".join(group)
            if word == self.tokenizer.unk_token:
                word_phones = []  # a word the tokenizer cannot read is left unsaid, not spelled "unk"
            elif word.upper() in self.cmu:
                word_phones = [split_tone(p) for p in self.cmu[word.upper()]]
            else:
                word_phones = [split_tone(p) if p in ARPA else (p, 0) for p in oov_phones(word, self.cmu, self.gru)]
            phones += [self._symbol(p) for p, _ in word_phones]
            tones += [t for _, t in word_phones]
            word2ph += distribute(len(word_phones), len(group))
        return Phonemes(phones + ["_"], tones + [0], word2ph + [1])

    @torch.inference_mode()
    def bert_features(self, norm_text: str, word2ph: list[int]) -> torch.Tensor:
        inputs = self.tokenizer(norm_text, return_tensors="pt")
        n_tokens = inputs["input_ids"].shape[-1]
        limit = self.bert.config.max_position_embeddings
        if n_tokens > limit:
            raise ValueError(f"a sentence has {n_tokens} BERT tokens, more than the model's {limit}; add punctuation")
        if n_tokens != len(word2ph):
            raise AssertionError(f"tokenizer gave {n_tokens} tokens for {len(word2ph)} word2ph entries")
        hidden = self.bert(**inputs, output_hidden_states=True).hidden_states[BERT_LAYER][0]
        return torch.repeat_interleave(hidden, torch.tensor(word2ph), dim=0).T  # [768, phones]

    def __call__(self, piece: str) -> dict[str, torch.Tensor]:
        """Model inputs for one piece of text (as `split_sentences` yields it), batch of one."""
        piece = re.sub(r"([a-z])([A-Z])", r"\1 \2", piece)
        norm_text = normalize(piece)
        ph = self.g2p(norm_text)
        ids = [self.symbol_to_id[p] for p in ph.phones]
        tones = [t + EN_TONE_OFFSET for t in ph.tones]
        langs = [EN_LANGUAGE_ID] * len(ids)
        word2ph = ph.word2ph
        if self.add_blank:
            # A 0 (blank symbol, tone 0, language 0) before, between and after every phone.
            ids, tones, langs = ([0] + [v for x in seq for v in (x, 0)] for seq in (ids, tones, langs))
            word2ph = [2 * n for n in word2ph]
            word2ph[0] += 1
        ja_bert = self.bert_features(norm_text, word2ph)
        n = len(ids)
        return {
            "phones": torch.tensor([ids]),
            "tones": torch.tensor([tones]),
            "languages": torch.tensor([langs]),
            "bert": torch.zeros(1, 1024, n),  # the English model feeds BERT through ja_bert only
            "ja_bert": ja_bert.unsqueeze(0),
        }
