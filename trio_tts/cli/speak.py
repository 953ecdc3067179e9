"""``trio-tts speak``: text into an audio file, sentences synthesised in parallel.

How :func:`speak` handles long text, like a printer with several print heads: the text is cut
into sentences, each sentence becomes its own context (up to ``jobs`` at once, spread over
the pool's connections), and the audio is written to the file strictly in sentence order as
soon as the next sentence in line is complete. At most ``4 × jobs`` finished sentences wait
in memory for a slow predecessor (or for the encoder), so memory stays bounded for any length
of text. The service always sends PCM; WAV, FLAC, MP3 and Ogg Opus files are written from it
here (:mod:`trio_tts.cli.output` says why).
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from .._core.errors import InvalidOptions
from .._core.events import Audio
from .._core.options import AudioEncoding
from .._core.pool import Pool, open_pool
from ..providers.cartesia.http import CartesiaHTTPClient
from ..providers.cartesia.options import CartesiaOptions
from ..providers.cartesia.provider import CartesiaProvider
from ..providers.elevenlabs.http import ElevenLabsHTTPClient
from ..providers.elevenlabs.options import ElevenLabsOptions
from ..providers.elevenlabs.provider import ElevenLabsProvider
from ..providers.inworld.http import InworldHTTPClient
from ..providers.inworld.options import VoiceOptions
from ..providers.inworld.provider import InworldProvider
from ..providers.rime.http import RimeHTTPClient
from ..providers.rime.options import RimeOptions
from ..providers.rime.provider import RimeProvider
from .common import Progress, Target, endpoints, split_sentences
from .output import AudioWriter, open_writer, output_format, synthesis_rate

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
AnyOptions = VoiceOptions | RimeOptions | ElevenLabsOptions | CartesiaOptions
#: Per provider: its options class.
OPTIONS: dict[str, type[AnyOptions]] = {
    "inworld": VoiceOptions,
    "rime": RimeOptions,
    "elevenlabs": ElevenLabsOptions,
    "cartesia": CartesiaOptions,
}


async def speak(
    text: str,
    output: str | os.PathLike[str],
    *,
    options: AnyOptions | None = None,
    url: str | None = None,
    api_key: str | None = None,
    jobs: int = 4,
    synthesizer: str = "espeak",
    use_http: bool = False,
    progress: TextIO | None = None,
    provider: str = "inworld",
) -> SpeakResult:
    """Synthesise ``text`` into the audio file ``output`` (see the module docstring).

    The file name picks the format: ``.wav`` (16-bit PCM), ``.flac``, ``.mp3`` or
    ``.ogg``/``.opus``/``.oga`` (Opus); the service sends PCM either way and the file is
    encoded here (:mod:`trio_tts.cli.output`), complete with its headers.

    Args:
        options: voice, model, sample rate ... (the encoding comes from the file name; an Ogg
            file at a rate Opus does not code is synthesised at 48 kHz).
        url: the service (``None``: an embedded local server with ``synthesizer``).
        api_key: the service's key (``None``: no credential).
        jobs: sentences synthesised at once.
        use_http: one HTTP request per sentence instead of WebSocket contexts (Inworld's
            ``voice:stream``, Rime's ``/v1/rime-tts``, ElevenLabs' ``text-to-speech/.../stream``).
        progress: where to draw progress (``None``: nowhere).
        provider: ``"inworld"`` (options: :class:`VoiceOptions`), ``"rime"``
            (:class:`RimeOptions`; one connection per sentence in flight), ``"elevenlabs"``
            (:class:`ElevenLabsOptions`; a ``pcm_*`` format is asked for) or
            ``"cartesia"`` (:class:`CartesiaOptions`; ``jobs`` contexts on one connection: the
            account's concurrency must allow that many).

    Raises:
        InvalidOptions: no text, an unknown file suffix, bad options or ``jobs`` (before any
            I/O).
        TTSError: from the pool or the HTTP client. OSError: writing the file.
    """
    kind = OPTIONS.get(provider)
    if kind is None:
        raise InvalidOptions(f"provider: {provider!r} is not one of {', '.join(OPTIONS)}")
    fmt = output_format(output)
    if options is not None and not isinstance(options, kind):
        raise InvalidOptions(f"options: --provider {provider} takes {kind.__name__}")
    opts: AnyOptions = options or kind()
    # The services send 16-bit PCM for the file (Rime and Cartesia: the options' default).
    if isinstance(opts, VoiceOptions):
        opts = opts.replace(encoding=AudioEncoding.LINEAR16)
    elif isinstance(opts, CartesiaOptions):
        opts = opts.replace(encoding=AudioEncoding.PCM)
    # Only Inworld's options have a bit rate: the others take its default.
    bit_rate = opts.bit_rate if isinstance(opts, VoiceOptions) else VoiceOptions().bit_rate
    rate = synthesis_rate(fmt, opts.sample_rate)
    if isinstance(opts, ElevenLabsOptions):
        opts = opts.replace(output_format=f"pcm_{rate}")  # the rate is the format's
    elif rate != opts.sample_rate:
        opts = opts.replace(sample_rate=rate)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 100:
        raise InvalidOptions(f"jobs: {jobs!r} must be an integer in 1..100")
    target = Target(url, api_key, synthesizer, provider)
    path = Path(output)
    sentences = _sentences(text)
    with (
        _part_file(path) as part,
        open_writer(part, fmt, opts.sample_rate, bit_rate=bit_rate) as writer,
    ):
        stats = await _synthesize_all(sentences, writer, opts, target, jobs, use_http, progress)
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
    writer: AudioWriter,
    opts: AnyOptions,
    target: Target,
    jobs: int,
    use_http: bool,
    progress_stream: TextIO | None,
) -> _Stats:
    n = len(sentences)
    durations: list[float] = []
    bytes_per_second = 2 * opts.sample_rate
    limiter = trio.CapacityLimiter(jobs)
    window = trio.Semaphore(4 * jobs)  # sentences started but not yet written
    progress = Progress(n, progress_stream if n > 1 else None)
    first_audio: float | None = None
    in_flight = peak = 0

    async with AsyncExitStack() as stack:
        ws_url, http_base, server = await stack.enter_async_context(endpoints(target))
        one: SynthesizeOne
        if isinstance(opts, CartesiaOptions):
            if use_http:
                cartesia_client = CartesiaHTTPClient(
                    target.api_key, base_url=http_base, defaults=opts
                )
                await stack.enter_async_context(cartesia_client)
                one = _http_sentence(cartesia_client)
            else:
                # Every context on one socket, as Cartesia recommends: jobs at once.
                cartesia = CartesiaProvider(target.api_key, url=ws_url, concurrency=jobs)
                cartesia_pool = await stack.enter_async_context(
                    open_pool(cartesia, defaults=opts)
                )
                one = _ws_sentence(cartesia_pool)
        elif isinstance(opts, RimeOptions):
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
        elif isinstance(opts, ElevenLabsOptions) and use_http:
            el_client = ElevenLabsHTTPClient(target.api_key, base_url=http_base, defaults=opts)
            await stack.enter_async_context(el_client)
            one = _http_sentence(el_client)
        elif isinstance(opts, ElevenLabsOptions):
            elevenlabs = ElevenLabsProvider(target.api_key, url=ws_url)
            el_pool = await stack.enter_async_context(
                open_pool(elevenlabs, defaults=opts, max_connections=math.ceil(jobs / 5))
            )
            one = _ws_sentence(el_pool)
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
        # Finished sentences to the writer; the window keeps at most 4 × jobs in it.
        send_done, receive_done = trio.open_memory_channel[tuple[int, bytes]](math.inf)

        async def write_in_order() -> None:
            """Append each sentence's audio as soon as it is next in line (encoding in a
            worker thread, so the loop keeps serving the other contexts)."""
            waiting: dict[int, bytes] = {}
            async with receive_done:
                async for i, pcm in receive_done:
                    waiting[i] = pcm
                    while len(durations) in waiting:
                        pcm = waiting.pop(len(durations))
                        await trio.to_thread.run_sync(writer.write, pcm)
                        durations.append(len(pcm) / bytes_per_second)
                        window.release()
                        progress.update(len(durations), sum(durations))

        async def worker(i: int, done: trio.MemorySendChannel[tuple[int, bytes]]) -> None:
            nonlocal first_audio, in_flight, peak

            def on_audio() -> None:
                nonlocal first_audio
                if i == 0 and first_audio is None:
                    first_audio = trio.current_time() - start

            async with done:
                async with limiter:
                    in_flight += 1
                    peak = max(peak, in_flight)
                    try:
                        pcm = await one(sentences[i], on_audio)
                    finally:
                        in_flight -= 1
                await done.send((i, pcm))

        # Holds the writer and one task per sentence, started in order; the window bounds
        # memory. The loop below owns send_done, each worker a clone.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_in_order)
            async with send_done:
                for i in range(n):
                    await window.acquire()
                    nursery.start_soon(worker, i, send_done.clone())
        elapsed = trio.current_time() - start
        server_peak = server.statistics().peak_contexts_per_connection if server else None
    progress.update(n, sum(durations), final=True)
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


def _http_sentence(
    client: InworldHTTPClient | RimeHTTPClient | ElevenLabsHTTPClient | CartesiaHTTPClient,
) -> SynthesizeOne:
    """One sentence through one HTTP request: Inworld's ``voice:stream``, Rime's
    ``/v1/rime-tts``, ElevenLabs' ``text-to-speech/{voice_id}/stream`` or Cartesia's
    ``/tts/bytes`` (the last three's chunks are never empty)."""

    async def one(text: str, on_audio: Callable[[], None]) -> bytes:
        pieces: list[bytes] = []
        async with client.stream(text) as chunks:
            async for audio in chunks:
                if audio.data:
                    on_audio()
                    pieces.append(audio.data)
        return b"".join(pieces)

    return one
