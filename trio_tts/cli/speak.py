"""``trio-tts speak``: text into an audio file, sentences synthesised in parallel.

How :func:`speak` handles long text, like a printer with several print heads: the text is cut
into sentences, each sentence becomes its own context (up to ``jobs`` at once, spread over
the pool's connections), and the audio is written to the WAV file strictly in sentence order
as soon as the next sentence in line is complete. At most ``4 × jobs`` finished sentences
wait in memory for a slow predecessor, so memory stays bounded for any length of text.
Compressed files are one stream from one context (:mod:`trio_tts.cli.compressed`).
"""

from __future__ import annotations

import math
import os
import wave
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from .._core.errors import InvalidOptions
from .._core.events import Audio
from .._core.pool import Pool, open_pool
from ..providers.inworld.http import InworldHTTPClient
from ..providers.inworld.options import VoiceOptions
from ..providers.inworld.provider import InworldProvider
from ..providers.rime.http import RimeHTTPClient
from ..providers.rime.options import RimeOptions
from ..providers.rime.provider import RimeProvider
from .common import Progress, Target, endpoints, split_sentences
from .compressed import output_encoding, write_compressed

__all__ = ["SpeakResult", "speak"]


@attrs.frozen
class SpeakResult:
    """What :func:`speak` produced, with its timings."""

    path: str
    sample_rate: int
    #: Seconds of audio in the file.
    duration: float
    sentences: int
    words: int
    #: Seconds from the first request to the first audio of the first sentence.
    time_to_first_audio: float
    #: Seconds of synthesis (first request to last audio written).
    elapsed: float
    #: ``elapsed / duration``: 0.01 means 100x faster than real time.
    real_time_factor: float
    #: Most contexts (or HTTP requests) in flight at once.
    peak_concurrency: int
    #: Seconds of audio per sentence, in order.
    sentence_durations: tuple[float, ...]
    source: str
    #: The embedded server's peak of contexts open at once on one connection (else None).
    server_peak_contexts: int | None = None


@attrs.frozen
class _Stats:
    time_to_first_audio: float
    elapsed: float
    peak: int
    durations: list[float]
    server_peak: int | None


SynthesizeOne = Callable[[str, Callable[[], None]], Awaitable[bytes]]


async def speak(
    text: str,
    output: str | os.PathLike[str],
    *,
    options: VoiceOptions | RimeOptions | None = None,
    url: str | None = None,
    api_key: str | None = None,
    jobs: int = 4,
    synthesizer: str = "espeak",
    use_http: bool = False,
    progress: TextIO | None = None,
    provider: str = "inworld",
) -> SpeakResult:
    """Synthesise ``text`` into the audio file ``output`` (see the module docstring).

    The file name picks the encoding: WAV (16-bit PCM) unless it ends in ``.ogg``/``.opus``
    (OGG_OPUS), ``.mp3`` or ``.flac``, which come from one context as one stream
    (:mod:`trio_tts.cli.compressed`).

    Args:
        options: voice, model, sample rate ... (the encoding comes from the file name).
        url: the service (``None``: an embedded local server with ``synthesizer``).
        api_key: the service's key (``None``: no credential).
        jobs: sentences synthesised at once.
        use_http: one ``voice:stream`` request per sentence instead of WebSocket contexts.
        progress: where to draw progress (``None``: nowhere).
        provider: ``"inworld"`` (options: :class:`VoiceOptions`) or ``"rime"``
            (:class:`RimeOptions`; one connection per sentence in flight).

    Raises:
        InvalidOptions: no text, bad options or ``jobs`` (before any I/O).
        TTSError: from the pool or the HTTP client. OSError: writing the file.
    """
    if provider not in ("inworld", "rime"):
        raise InvalidOptions(f"provider: {provider!r} is not 'inworld' or 'rime'")
    opts: VoiceOptions | RimeOptions
    if provider == "rime":
        if options is not None and not isinstance(options, RimeOptions):
            raise InvalidOptions("options: --provider rime takes RimeOptions")
        opts = options or RimeOptions()
        if not output_encoding(output).is_pcm:
            raise InvalidOptions("output: --provider rime writes WAV files only (.wav)")
    else:
        if options is not None and not isinstance(options, VoiceOptions):
            raise InvalidOptions("options: --provider inworld takes VoiceOptions")
        opts = (options or VoiceOptions()).replace(encoding=output_encoding(output))
    target = Target(url, api_key, synthesizer, provider)
    path = Path(output)
    if isinstance(opts, VoiceOptions) and not opts.encoding.is_pcm:
        return await _speak_compressed(text, path, opts, target, use_http, progress)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 100:
        raise InvalidOptions(f"jobs: {jobs!r} must be an integer in 1..100")
    sentences = _sentences(text)
    with _part_file(path) as part, wave.open(str(part), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(opts.sample_rate)
        stats = await _synthesize_all(sentences, wav, opts, target, jobs, use_http, progress)
    return _result(path, opts.sample_rate, sentences, stats, target)


async def _speak_compressed(
    text: str, path: Path, opts: VoiceOptions, target: Target, use_http: bool,
    progress_stream: TextIO | None,
) -> SpeakResult:  # fmt: skip
    sentences = _sentences(text)
    with _part_file(path) as part:
        progress = Progress(len(sentences), progress_stream if len(sentences) > 1 else None)
        async with endpoints(target) as (ws_url, http_base, server):
            with part.open("wb") as out:
                written = await write_compressed(
                    sentences, out, opts, ws_url=ws_url, http_base=http_base,
                    api_key=target.api_key, use_http=use_http, on_sentence=progress.update,
                )  # fmt: skip
            peak = server.statistics().peak_contexts_per_connection if server else None
    stats = _Stats(written.time_to_first_audio, written.elapsed, 1, written.durations, peak)
    progress.update(len(sentences), sum(stats.durations), final=True)
    return _result(path, opts.sample_rate, sentences, stats, target)


def _sentences(text: str) -> list[str]:
    sentences = split_sentences(text)
    if not sentences:
        raise InvalidOptions("text: nothing to speak (the text is empty)")
    return sentences


@contextmanager
def _part_file(path: Path) -> Iterator[Path]:
    """The ``.part`` file to write: renamed to ``path`` if the block succeeds, else removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def _result(
    path: Path, sample_rate: int, sentences: list[str], stats: _Stats, target: Target
) -> SpeakResult:
    duration = sum(stats.durations)
    return SpeakResult(
        path=str(path),
        sample_rate=sample_rate,
        duration=duration,
        sentences=len(sentences),
        words=sum(len(s.split()) for s in sentences),
        time_to_first_audio=stats.time_to_first_audio,
        elapsed=stats.elapsed,
        real_time_factor=stats.elapsed / duration if duration else math.inf,
        peak_concurrency=stats.peak,
        sentence_durations=tuple(stats.durations),
        source=target.describe(),
        server_peak_contexts=stats.server_peak,
    )


async def _synthesize_all(
    sentences: list[str],
    wav: wave.Wave_write,
    opts: VoiceOptions | RimeOptions,
    target: Target,
    jobs: int,
    use_http: bool,
    progress_stream: TextIO | None,
) -> _Stats:
    n = len(sentences)
    results: list[bytes | None] = [None] * n
    durations: list[float] = []
    bytes_per_second = 2 * opts.sample_rate
    limiter = trio.CapacityLimiter(jobs)
    window = trio.Semaphore(4 * jobs)  # sentences started but not yet written
    progress = Progress(n, progress_stream if n > 1 else None)
    first_audio: float | None = None
    in_flight = peak = written = 0

    async with AsyncExitStack() as stack:
        ws_url, http_base, server = await stack.enter_async_context(endpoints(target))
        one: SynthesizeOne
        if isinstance(opts, RimeOptions):
            if use_http:
                rime_client = RimeHTTPClient(target.api_key, url=http_base, defaults=opts)
                await stack.enter_async_context(rime_client)
                one = _http_sentence(rime_client)
            else:
                rime = RimeProvider(target.api_key, url=ws_url)
                # One utterance per connection: as many connections as sentences at once.
                rime_pool = await stack.enter_async_context(
                    open_pool(rime, defaults=opts, max_connections=jobs)
                )
                one = _ws_sentence(rime_pool)
        elif use_http:
            client = InworldHTTPClient(target.api_key, base_url=http_base, defaults=opts)
            await stack.enter_async_context(client)
            one = _http_sentence(client)
        else:
            provider = InworldProvider(target.api_key, url=ws_url)
            pool = await stack.enter_async_context(
                open_pool(provider, defaults=opts, max_connections=math.ceil(jobs / 5))
            )
            one = _ws_sentence(pool)
        start = trio.current_time()
        progress.restart()

        def flush_ready() -> None:
            nonlocal written
            while written < n and results[written] is not None:
                pcm = results[written]
                assert pcm is not None
                wav.writeframesraw(pcm)
                durations.append(len(pcm) / bytes_per_second)
                results[written] = None
                written += 1
                window.release()
            progress.update(written, sum(durations))

        async def worker(i: int) -> None:
            nonlocal first_audio, in_flight, peak

            def on_audio() -> None:
                nonlocal first_audio
                if i == 0 and first_audio is None:
                    first_audio = trio.current_time() - start

            async with limiter:
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    results[i] = await one(sentences[i], on_audio)
                finally:
                    in_flight -= 1
            flush_ready()

        # Holds one task per sentence, started in order; the window bounds memory.
        async with trio.open_nursery() as nursery:
            for i in range(n):
                await window.acquire()
                nursery.start_soon(worker, i)
        elapsed = trio.current_time() - start
        server_peak = server.statistics().peak_contexts_per_connection if server else None
    progress.update(written, sum(durations), final=True)
    ttfa = first_audio if first_audio is not None else elapsed
    return _Stats(ttfa, elapsed, peak, durations, server_peak)


def _ws_sentence(pool: Pool[Any]) -> SynthesizeOne:
    """One sentence through its own pooled context."""

    async def one(text: str, on_audio: Callable[[], None]) -> bytes:
        pieces: list[bytes] = []
        ctx = await pool.open_context()
        async with ctx:
            await ctx.send_text(text)
            await ctx.finish()
            async for event in ctx:
                if isinstance(event, Audio) and event.data:
                    on_audio()
                    pieces.append(event.data)
        return b"".join(pieces)

    return one


def _http_sentence(client: InworldHTTPClient | RimeHTTPClient) -> SynthesizeOne:
    """One sentence through one HTTP request: Inworld's ``voice:stream`` or Rime's
    ``/v1/rime-tts`` (whose chunks are never empty)."""

    async def one(text: str, on_audio: Callable[[], None]) -> bytes:
        pieces: list[bytes] = []
        async with client.stream(text) as chunks:
            async for audio in chunks:
                if audio.data:
                    on_audio()
                    pieces.append(audio.data)
        return b"".join(pieces)

    return one
