"""eSpeak NG through ctypes: real, non-silent speech with plausible word timings."""

from __future__ import annotations

import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import trio

from trio_tts.server import VOICES, EspeakSynthesizer, Speech, UnknownVoice
from trio_tts.server import _espeak as espeak

TEXT = "The quick brown fox jumps over the lazy dog."


def _rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


async def test_speech_is_real_and_timed() -> None:
    with trio.fail_after(10):
        speech = await EspeakSynthesizer().synthesize(TEXT, voice="Ashley", sample_rate=24000)
    assert speech.sample_rate == 24000
    assert len(speech.pcm) % 2 == 0
    assert _rms(speech.pcm) > 500  # speech, not silence
    assert 1.5 < speech.duration < 6.0  # nine words at ~175 words per minute
    assert [w for w, _, _ in speech.words] == TEXT.rstrip(".").split()
    previous_end = 0.0
    for _word, start, end in speech.words:
        assert previous_end <= start <= end <= speech.duration + 1e-6
        previous_end = start
    starts = [s for _, s, _ in speech.words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 48000])
async def test_requested_sample_rate_is_honoured(rate: int) -> None:
    synth = EspeakSynthesizer()
    with trio.fail_after(10):
        native_rate = espeak.native_sample_rate()
        native = await synth.synthesize(TEXT, voice="Dennis", sample_rate=native_rate)
        speech = await synth.synthesize(TEXT, voice="Dennis", sample_rate=rate)
    assert speech.sample_rate == rate
    # Same audio, resampled: the duration is preserved to within a few milliseconds.
    assert speech.duration == pytest.approx(native.duration, abs=0.005)
    assert _rms(speech.pcm) > 500


async def test_speaking_rate_changes_duration() -> None:
    synth = EspeakSynthesizer()
    with trio.fail_after(10):
        slow = await synth.synthesize(TEXT, voice="Alex", sample_rate=16000, speaking_rate=0.5)
        fast = await synth.synthesize(TEXT, voice="Alex", sample_rate=16000, speaking_rate=1.5)
    assert slow.duration > 2 * fast.duration


#: A short greeting per language, so each voice speaks its own language.
HELLO = {"en": "Hello there", "ar": "مرحبا", "de": "Guten Tag", "es": "Hola amigo",
         "fr": "Bonjour", "he": "שלום", "hi": "नमस्ते", "it": "Buongiorno", "ja": "こんにちは",
         "ko": "안녕하세요", "nl": "Goedendag", "pl": "Dzień dobry", "pt": "Bom dia",
         "ru": "Привет", "zh": "你好"}  # fmt: skip


async def test_every_listed_voice_speaks_and_unknown_fails() -> None:
    synth = EspeakSynthesizer()
    with trio.fail_after(30):
        for name, info in VOICES.items():
            speech = await synth.synthesize(HELLO[info.language], voice=name, sample_rate=16000)
            assert _rms(speech.pcm) > 300, name
            assert speech.duration > 0.2, name
        with pytest.raises(UnknownVoice, match=r"^Unknown voice: Nobody$"):
            await synth.synthesize("Hello", voice="Nobody", sample_rate=16000)


def test_the_voice_table_is_every_inworld_system_voice_each_its_own_espeak_voice() -> None:
    import espeakng_loader

    assert len(VOICES) == 113 and {"Sarah", "Clive", "Hana", "Jason", "Dennis"} <= set(VOICES)
    assert sum(v.language == "en" for v in VOICES.values()) == 73
    assert set(HELLO) == {v.language for v in VOICES.values()}
    # eSpeak quietly falls back to its default for an unknown variant: check they all exist.
    variants = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    for name, info in VOICES.items():
        assert info.voice_id == name and info.gender in ("female", "male")
        language, _, variant = info.espeak_name.partition("+")
        assert (variants / variant).is_file(), name
        assert language.split("-")[0] in (info.language, "cmn"), name
        assert 0 <= info.pitch <= 100
    spoken_by = {(v.espeak_name.lower(), v.pitch) for v in VOICES.values()}
    assert len(spoken_by) == len(VOICES)  # no two names sound alike


def _pitch_hz(speech: Speech) -> float:
    """The median fundamental frequency of the voiced 40 ms frames (autocorrelation)."""
    samples = np.frombuffer(speech.pcm, dtype="<i2").astype(np.float64)
    rate, size = speech.sample_rate, speech.sample_rate // 25
    found = []
    for at in range(0, len(samples) - size, size // 2):
        frame = samples[at : at + size]
        if np.sqrt(np.mean(frame**2)) < 800:
            continue
        frame = frame - frame.mean()
        corr = np.correlate(frame, frame, "full")[size - 1 :]
        low, high = rate // 500, rate // 60
        found.append(rate / (low + int(np.argmax(corr[low:high]))))
    return float(np.median(found))


async def test_voices_sound_different() -> None:
    synth = EspeakSynthesizer()
    with trio.fail_after(10):
        said = {
            name: await synth.synthesize(TEXT, voice=name, sample_rate=16000)
            for name in ("Priya", "Abby", "Dennis", "Jason", "Sarah", "Hana", "Clive")
        }
    assert len({s.pcm for s in said.values()}) == len(said)
    # Priya and Abby share an eSpeak voice; Abby's pitch is set higher, and is heard higher.
    assert VOICES["Abby"].espeak_name == VOICES["Priya"].espeak_name
    assert _pitch_hz(said["Abby"]) > 1.25 * _pitch_hz(said["Priya"])
    assert _pitch_hz(said["Hana"]) > 1.5 * _pitch_hz(said["Dennis"])


async def test_threads_do_not_block_the_loop_and_are_much_faster_than_real_time() -> None:
    synth = EspeakSynthesizer()
    results: list[Speech] = []

    async def speak() -> None:
        results.append(await synth.synthesize(TEXT * 3, voice="Hades", sample_rate=24000))

    with trio.fail_after(20):
        cpu = time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(speak)
        cpu = time.process_time() - cpu
    audio = sum(s.duration for s in results)
    assert len(results) == 4
    assert audio / cpu > 20  # measured ~400x on the dev machine; leave room for slow CI


def test_every_word_gets_a_timing_even_when_espeak_merges_words() -> None:
    from trio_tts.server._espeak import synthesize

    text = "I am fine. You are a cat. Don't stop now!"
    speech = synthesize(text, voice="Ashley", sample_rate=24000)
    assert [w for w, _, _ in speech.words] == [
        "I",
        "am",
        "fine",
        "You",
        "are",
        "a",
        "cat",
        "Don't",
        "stop",
        "now",
    ]
    starts = [s for _, s, _ in speech.words]
    assert starts == sorted(starts)
    assert all(s <= e <= speech.duration + 1e-9 for _, s, e in speech.words)


async def test_cancelling_waits_for_the_thread_to_leave_native_code() -> None:
    """A cancelled call is not abandoned: once it returns, no thread is inside eSpeak/soxr."""
    synth = EspeakSynthesizer()
    long_text = " ".join([TEXT] * 40)
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(synth.synthesize, long_text, voice="Ashley", sample_rate=48000)
                )
                while espeak._calls == 0:  # the worker thread has entered synthesize()
                    await trio.sleep(0.001)
                scope.cancel()
        assert espeak._calls == 0


_EXIT_WHILE_SPEAKING = """
import threading
from trio_tts.server import _espeak

started = threading.Event()

def speak_forever():
    while True:
        _espeak.synthesize("Far out at sea, a boat turned toward the light.",
                           voice="Ashley", sample_rate=48000)
        started.set()

for _ in range(2):
    threading.Thread(target=speak_forever, daemon=True).start()
started.wait()
# The main thread returns: the interpreter exits while daemon threads are mid-call.
"""


def test_exiting_while_threads_synthesise_does_not_abort() -> None:
    """Without the exit hook this aborts more often than not ("terminate called without an
    active exception", status -6): soxr's C++ binding cannot be unwound at finalisation."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EXIT_WHILE_SPEAKING],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "terminate called" not in err
