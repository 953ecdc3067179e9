"""eSpeak NG through ``ctypes``: real speech with real word timings, no subprocess.

The shared library and its data come from the PyPI package ``espeakng-loader``. eSpeak keeps
one global synthesiser per process and is not thread-safe, so every call into it holds
:data:`_LOCK`; it is also fast (hundreds of seconds of audio per CPU second), so a single lock
is no bottleneck for a local test server.

How one :func:`synthesize` call works: eSpeak runs in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode, so
``espeak_Synth`` returns only once the whole text is spoken, calling our callback with blocks
of 22050 Hz int16 samples and a list of events. ``espeakEVENT_WORD`` events carry the word's
character position and length in the input and its start in the audio (ms); a word ends
where the next one starts (or where the audio ends). The samples are then resampled with
``soxr`` to the rate the client asked for.

Exiting while a call is running: CPython stops daemon threads (trio's worker threads among
them) the moment they next take the GIL after finalisation begins, by unwinding them with
``pthread_exit``. A thread inside ``soxr``'s C++ binding, which takes the GIL back in a
``noexcept`` destructor, cannot be unwound and the whole process aborts ("terminate called
without an active exception", exit 134). So an :mod:`atexit` hook waits (a bounded time) for
the calls in flight and holds back new ones: no thread is inside eSpeak or ``soxr`` once the
interpreter starts tearing down.

Example::

    speech = synthesize("Hello world", voice="Ashley", sample_rate=24000)
    speech.duration        # about 0.9 s
    speech.words           # [("Hello", 0.0, 0.41), ("world", 0.41, 0.9)]
"""

from __future__ import annotations

import atexit
import ctypes
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._speech import Speech, UnknownVoice
from ._voices import VOICES

__all__ = ["native_sample_rate", "synthesize"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3  # 0..100, 50 = the voice variant's own pitch
_DEFAULT_WPM = 175


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)

_LOCK = threading.Lock()
#: Guards :data:`_calls` and :data:`_closing` (see :func:`_in_flight`, :func:`_drain`).
_IDLE = threading.Condition()
_calls = 0
_closing = False
_DRAIN_SECONDS = 10.0


class _Engine:
    """The process-wide eSpeak instance (created on first use, under the lock)."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib: Any = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self.lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate})")
        self.sample_rate: int = rate
        self.samples: list[bytes] = []
        self.words: list[tuple[int, int, int]] = []  # (text_position, length, audio ms)
        # Keep a reference to the C callback for the life of the process.
        self._callback = _CALLBACK(self._on_synth)
        self.lib.espeak_SetSynthCallback(self._callback)
        self.voice: tuple[str, int] | None = None  # (eSpeak voice, pitch) now selected
        self.rate: int | None = None

    def _on_synth(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self.samples.append(ctypes.string_at(wav, count * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self.words.append((event.text_position, event.length, event.audio_position))
            i += 1
        return 0

    def speak(
        self, text: str, espeak_voice: str, pitch: int, wpm: int
    ) -> tuple[bytes, list[tuple[int, int, int]]]:
        if (espeak_voice, pitch) != self.voice:
            if self.lib.espeak_SetVoiceByName(espeak_voice.encode()) != 0:
                raise UnknownVoice(f"eSpeak has no voice {espeak_voice!r}")
            self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
            self.voice = (espeak_voice, pitch)
            self.rate = None
        if wpm != self.rate:
            self.lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
            self.rate = wpm
        self.samples, self.words = [], []
        encoded = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(
            encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err})")
        return b"".join(self.samples), self.words


_engine: _Engine | None = None


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


@contextmanager
def _in_flight() -> Iterator[None]:
    """Count one call into native code; once the interpreter is exiting, wait forever instead
    (the process is about to end, and a thread parked on a lock is never unwound)."""
    global _calls
    with _IDLE:
        _IDLE.wait_for(lambda: not _closing)
        _calls += 1
    try:
        yield
    finally:
        with _IDLE:
            _calls -= 1
            _IDLE.notify_all()


@atexit.register
def _drain(timeout: float = _DRAIN_SECONDS) -> bool:
    """At exit: hold back new calls and wait up to ``timeout`` s for those in flight.

    Returns whether none was left running."""
    global _closing
    with _IDLE:
        _closing = True
        return _IDLE.wait_for(lambda: _calls == 0, timeout)


def native_sample_rate() -> int:
    """The rate eSpeak synthesises at (22050 Hz with the bundled voices)."""
    with _in_flight(), _LOCK:
        return _get_engine().sample_rate


def _resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    if from_rate == to_rate or not pcm:
        return pcm
    import soxr

    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


def synthesize(text: str, *, voice: str, sample_rate: int, speaking_rate: float = 1.0) -> Speech:
    """Speak ``text`` with the eSpeak voice behind Inworld voice name ``voice``. Blocking.

    Raises:
        UnknownVoice: ``voice`` is not in :data:`VOICES`.
    """
    info = VOICES.get(voice)
    if info is None:
        raise UnknownVoice(f"Unknown voice: {voice}")
    wpm = max(80, min(450, round(_DEFAULT_WPM * speaking_rate)))
    with _in_flight():
        with _LOCK:
            engine = _get_engine()
            native = engine.sample_rate
            pcm, raw_words = engine.speak(text, info.espeak_name, info.pitch, wpm)
        out = _resample(pcm, native, sample_rate)
    duration = min(len(pcm) / 2 / native, len(out) / 2 / sample_rate)
    words = _align_words(text, raw_words, duration)
    return Speech(pcm=out, sample_rate=sample_rate, words=words)


_WORD = re.compile(r"\w[\w'’-]*")


def _align_words(
    text: str, events: list[tuple[int, int, int]], duration: float
) -> list[tuple[str, float, float]]:
    """Word timings for every word of ``text`` from eSpeak's word events.

    eSpeak does not report every word (it merges some, "I am" is one event), so each event's
    span — from its start to the next event's — is shared by its word and the unreported
    words after it, in proportion to their lengths. Positions are 1-based characters.
    """
    tokens = [(m.start(), m.group()) for m in _WORD.finditer(text)]
    if not tokens:
        return []
    # The token each event starts on (events inside a token map to that token).
    anchors: list[tuple[int, float]] = []
    for pos, _length, ms in events:
        index = max((i for i, (start, _) in enumerate(tokens) if start <= pos - 1), default=0)
        if not anchors or index > anchors[-1][0]:
            anchors.append((index, min(ms / 1000, duration)))
    if not anchors or anchors[0][0] != 0:
        anchors.insert(0, (0, 0.0))
    words: list[tuple[str, float, float]] = []
    for n, (index, start) in enumerate(anchors):
        stop_index, end = anchors[n + 1] if n + 1 < len(anchors) else (len(tokens), duration)
        group = tokens[index:stop_index]
        total = sum(len(w) for _, w in group)
        at = start
        for _, word in group:
            span = (end - start) * len(word) / total
            words.append((word, at, max(at, min(at + span, duration))))
            at += span
    return words
