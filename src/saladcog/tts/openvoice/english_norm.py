"""English text normalisation as MeloTTS does it: lower-case, times, numbers, abbreviations.

Numbers are spelled with `inflect` (keithito/tacotron's rules): thousands separators dropped,
$ £ ¥ amounts as currency, decimals with "point", ordinals, 1001-2999 read as years.
"""

from __future__ import annotations

import re

import inflect

_inflect = inflect.engine()

# h:mm with an optional am/pm. (Upstream's pattern also lists dotted forms, but written as
# "a\\.m\\." in a raw string they require a literal backslash and never match: omitted.)
_time_re = re.compile(r"\b((0?[0-9])|(1[0-1])|(1[2-9])|(2[0-3])):([0-5][0-9])\s*(am|pm)?\b", re.IGNORECASE)
_comma_number_re = re.compile(r"([0-9][0-9,]+[0-9])")
_decimal_number_re = re.compile(r"([0-9]+\.[0-9]+)")
_currency_re = re.compile(r"(£|\$|¥)([0-9,.]*[0-9]+)")
_ordinal_re = re.compile(r"[0-9]+(st|nd|rd|th)")
_number_re = re.compile(r"-?[0-9]+")

_CURRENCIES = {
    "$": {0.01: "cent", 0.02: "cents", 1: "dollar", 2: "dollars"},
    "£": {0.01: "penny", 0.02: "pence", 1: "pound sterling", 2: "pounds sterling"},
    "¥": {0.02: "sen", 2: "yen"},
}

_ABBREVIATIONS = [
    (re.compile(rf"\b{abbr}\.", re.IGNORECASE), word)
    for abbr, word in [
        ("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"),
        ("jr", "junior"), ("maj", "major"), ("gen", "general"), ("drs", "doctors"), ("rev", "reverend"),
        ("lt", "lieutenant"), ("hon", "honorable"), ("sgt", "sergeant"), ("capt", "captain"),
        ("esq", "esquire"), ("ltd", "limited"), ("col", "colonel"), ("ft", "fort"),
    ]
]


def _expand_time(m: re.Match) -> str:
    hour = int(m.group(1))
    past_noon = hour >= 12
    if hour > 12:
        hour -= 12
    elif hour == 0:
        hour, past_noon = 12, True
    words = [_inflect.number_to_words(hour)]
    minute = int(m.group(6))
    if minute > 0:
        if minute < 10:
            words.append("oh")
        words.append(_inflect.number_to_words(minute))
    am_pm = m.group(7)
    if am_pm is None:
        words.append("p m" if past_noon else "a m")
    else:
        words.extend(am_pm)  # "am" -> "a m"
    return " ".join(words)


def _expand_currency(m: re.Match) -> str:
    units, value = _CURRENCIES[m.group(1)], m.group(2)
    parts = value.replace(",", "").split(".")
    if len(parts) > 2:
        return f"{value} {units[2]}"
    words = []
    whole = int(parts[0]) if parts[0] else 0
    if whole > 0:
        words.append(f"{whole} {units.get(whole, units[2])}")
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    if cents > 0:
        words.append(f"{cents} {units.get(cents / 100, units[0.02])}")
    return " ".join(words) if words else f"zero {units[2]}"


def _expand_number(m: re.Match) -> str:
    num = int(m.group(0))
    if 1000 < num < 3000:  # read as a year
        if num == 2000:
            return "two thousand"
        if 2000 < num < 2010:
            return "two thousand " + _inflect.number_to_words(num % 100)
        if num % 100 == 0:
            return _inflect.number_to_words(num // 100) + " hundred"
        return _inflect.number_to_words(num, andword="", zero="oh", group=2).replace(", ", " ")
    return _inflect.number_to_words(num, andword="")


def normalize_numbers(text: str) -> str:
    text = _comma_number_re.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _currency_re.sub(_expand_currency, text)
    text = _decimal_number_re.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ordinal_re.sub(lambda m: _inflect.number_to_words(m.group(0)), text)
    return _number_re.sub(_expand_number, text)


def normalize(text: str) -> str:
    text = _time_re.sub(_expand_time, text.lower())
    text = normalize_numbers(text)
    for regex, word in _ABBREVIATIONS:
        text = regex.sub(word, text)
    return text
