"""Speakers for segments and words against hand-made turns (saladcog.diarize.speakers), and the
shapes built from them: OpenAI's diarized_json (checked with the openai SDK's own model) and
subtitles with speaker prefixes."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from openai.types.audio import TranscriptionDiarized

from saladcog.asr import formats
from saladcog.diarize.speakers import UNKNOWN, Turn, TurnIndex, diarized_json, label_segments

A, B, C = "SPEAKER_00", "SPEAKER_01", "SPEAKER_02"
TURNS = [Turn(0.0, 2.0, A), Turn(2.0, 5.0, B), Turn(6.0, 8.0, A), Turn(8.0, 8.5, C)]


@pytest.mark.parametrize(
    "span, speaker",
    [
        ((0.5, 1.5), A),  # inside one turn
        ((1.0, 4.0), B),  # 1 s of A, 2 s of B
        ((1.5, 2.5), A),  # a word that a turn boundary splits in half: a tie, the first speaker
        ((1.4, 2.5), A),  # split unevenly: the larger part
        ((4.5, 7.0), A),  # 0.5 s of B, 1 s of A across a gap
        ((5.2, 5.4), B),  # between turns, nearer the end of B (0.2 s) than the start of A (0.6 s)
        ((5.7, 5.9), A),  # between turns, nearer A
        ((5.4, 5.6), B),  # exactly half-way: the earlier turn
        ((9.0, 9.5), C),  # after the last turn
        ((3.0, 3.0), B),  # a zero-length word inside a turn
        ((7.9, 8.6), C),  # 0.1 s of A, 0.5 s of C
    ],
)
def test_largest_overlap_then_nearest_turn(span, speaker):
    assert TurnIndex(TURNS).speaker(*span) == speaker


def test_turn_order_does_not_matter_and_overlapping_turns_add_up():
    overlapping = [Turn(0.0, 10.0, A), Turn(1.0, 3.0, B), Turn(4.0, 6.0, B), Turn(12.0, 13.0, C)]
    for _ in range(5):
        shuffled = random.Random(_).sample(overlapping, len(overlapping))
        index = TurnIndex(shuffled)
        assert index.speaker(2.0, 5.0) == A  # A 3 s; B 1 s + 1 s
        assert index.speaker(2.0, 3.0) == A  # A and B 1 s each: A's turn started first
        assert index.speaker(10.1, 10.3) == A  # A ended 0.1 s before, C starts 1.7 s after
        assert index.speaker(11.0, 11.2) == C  # A ended 1 s before, C starts 0.8 s after
        assert index.speaker(11.3, 11.4) == C


def test_no_turns_at_all_gives_unknown():
    assert TurnIndex([]).speaker(0.0, 1.0) == UNKNOWN
    assert TurnIndex([Turn(1.0, 1.0, A)]).speaker(0.0, 1.0) == UNKNOWN  # an empty turn is none


def test_segments_and_words_are_labelled_each_on_their_own():
    segments = [
        {"id": 1, "start": 0.0, "end": 4.5, "text": " Hello there. How are you?", "words": [
            {"start": 0.0, "end": 0.6, "word": " Hello"},
            {"start": 0.7, "end": 1.2, "word": " there."},
            {"start": 2.1, "end": 2.4, "word": " How"},
            {"start": 5.3, "end": 5.4, "word": " you?"},
        ]},
        {"id": 2, "start": 6.1, "end": 7.0, "text": " Fine."},
    ]
    labelled = label_segments(segments, TURNS)
    assert [s["speaker"] for s in labelled] == [B, A]
    assert [w["speaker"] for w in labelled[0]["words"]] == [A, A, B, B]
    assert "speaker" not in segments[0] and "speaker" not in segments[0]["words"][0]  # copies
    assert "words" not in labelled[1]


def test_many_words_against_many_turns_agree_with_a_plain_scan():
    rng = random.Random(7)
    turns, t = [], 0.0
    for _ in range(2000):
        start = t + rng.choice([0.0, 0.0, rng.uniform(0.0, 3.0)])
        t = start + rng.uniform(0.1, 8.0)
        turns.append(Turn(round(start, 3), round(t, 3), rng.choice([A, B, C])))
    index = TurnIndex(turns)
    for _ in range(3000):
        start = rng.uniform(-5.0, t + 5.0)
        end = start + rng.uniform(0.0, 3.0)
        overlaps: dict[str, float] = {}
        for turn in turns:
            shared = min(turn.end, end) - max(turn.start, start)
            if shared > 0:
                overlaps[turn.speaker] = overlaps.get(turn.speaker, 0.0) + shared
        if overlaps:
            assert index.speaker(start, end) == max(overlaps, key=overlaps.__getitem__)
        else:
            gaps = [(max(turn.start - end, start - turn.end), turn.start) for turn in turns]
            nearest = turns[gaps.index(min(gaps))]
            assert index.speaker(start, end) == nearest.speaker


def test_diarized_json_is_openais_shape():
    segments = label_segments(
        [{"id": 1, "start": 0.0, "end": 1.9, "text": " Hi."}, {"id": 2, "start": 2.2, "end": 4.0, "text": " Hey!"},
         {"id": 3, "start": 4.0, "end": 4.5, "text": " "}, {"id": 4, "start": 8.1, "end": 8.4, "text": " Yes."}],
        TURNS,
    )
    output = {"duration": 8.5, "text": "Hi. Hey! Yes.", "segments": segments,
              "speakers": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in reversed(TURNS)]}
    parsed = TranscriptionDiarized.model_validate(diarized_json(output))
    assert [(s.speaker, s.text, s.start, s.end) for s in parsed.segments] == [
        ("A", "Hi.", 0.0, 1.9), ("B", "Hey!", 2.2, 4.0), ("C", "Yes.", 8.1, 8.4)]
    assert parsed.task == "transcribe" and parsed.text == "Hi. Hey! Yes." and parsed.usage.seconds == 8.5
    assert len({s.id for s in parsed.segments}) == 3


def test_subtitles_carry_the_speaker():
    segments = [SimpleNamespace(start=0.0, end=1.9, text=" Hi."), SimpleNamespace(start=2.2, end=4.0, text=" Hey!"),
                SimpleNamespace(start=4.0, end=4.2, text=" ")]
    speakers = [s["speaker"] for s in label_segments([vars(s) for s in segments], TURNS)]
    assert formats.to_srt(segments, speakers).splitlines() == [
        "1", "00:00:00,000 --> 00:00:01,900", f"[{A}] Hi.", "", "2", "00:00:02,200 --> 00:00:04,000", f"[{B}] Hey!"]
    assert formats.to_vtt(segments, speakers).splitlines()[5:7] == ["00:00:02.200 --> 00:00:04.000", f"[{B}] Hey!"]
    assert formats.to_srt(segments).splitlines()[2] == "Hi."  # no speakers: as before
