"""Text splitting and option validation: pure functions, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_tts import AudioEncoding, InvalidOptions, VoiceOptions, split_text


def test_short_text_is_one_piece() -> None:
    assert split_text("Hello there.", 1000) == ["Hello there."]
    assert split_text("", 1000) == []


def test_splits_after_sentences_when_possible() -> None:
    text = "First sentence here. Second one is longer than that. Third."
    pieces = split_text(text, 30)
    assert pieces == ["First sentence here. ", "Second one is longer than ", "that. Third."]
    assert "".join(pieces) == text


def test_never_splits_inside_a_word_when_a_space_exists() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta"
    for piece in split_text(text, 12):
        assert len(piece) <= 12
        assert not piece.startswith(("lpha", "eta ", "amma"))
    assert all(p.strip() in text.split() or " " in p.strip() for p in split_text(text, 12))


def test_a_word_longer_than_the_limit_is_cut_between_characters() -> None:
    word = "x" * 25
    assert split_text(word, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_combining_marks_and_emoji_sequences_stay_whole() -> None:
    word = "e\u0301" * 6  # é as e + combining acute
    pieces = split_text(word, 5)
    assert "".join(pieces) == word
    assert all(not p.startswith("\u0301") for p in pieces)
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # ZWJ sequence
    assert split_text(family * 3, 6) == [family] * 3


def test_cjk_sentence_stops() -> None:
    text = "今日は良い天気です。明日も晴れるでしょう。"
    assert split_text(text, 12) == ["今日は良い天気です。", "明日も晴れるでしょう。"]


@given(st.text(min_size=0, max_size=400), st.integers(min_value=2, max_value=60))
def test_pieces_rejoin_and_respect_the_limit(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert "".join(pieces) == text
    assert all(0 < len(p) <= limit for p in pieces)


def test_voice_options_defaults_and_replace() -> None:
    opts = VoiceOptions()
    assert opts.encoding is AudioEncoding.LINEAR16
    faster = opts.replace(speaking_rate=1.2, encoding="pcm")
    assert faster.speaking_rate == 1.2 and faster.encoding is AudioEncoding.PCM


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"voice": ""}, r"^voice: must be a non-empty string$"),
        ({"sample_rate": 12345}, r"^sample_rate: 12345 is not one of 8000, 16000"),
        ({"speaking_rate": 2.0}, r"^speaking_rate: 2.0 is outside 0.5..1.5$"),
        ({"temperature": 0}, r"^temperature: 0 is outside \(0, 2\]$"),
        ({"encoding": "WAV"}, r"^AudioEncoding: 'WAV' is not one of LINEAR16, PCM, MP3"),
        ({"timestamp_type": "SYLLABLE"}, r"^TimestampType: 'SYLLABLE' is not one of"),
        ({"buffer_char_threshold": 0}, r"^buffer_char_threshold: 0 is outside 1..1000$"),
        ({"colour": "blue"}, r"^unknown option\(s\): colour$"),
    ],
)
def test_invalid_options_raise_early_with_a_clear_message(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidOptions, match=message):
        VoiceOptions().replace(**changes)
