"""``trio-tts``: speak text into a WAV file, run the local speech server, list voices.

::

    trio-tts speak "Hello there." -o hello.wav          # embedded local server (eSpeak NG)
    trio-tts speak -f chapter.txt -o chapter.wav --jobs 8
    echo "From stdin." | trio-tts speak - -o out.wav
    INWORLD_API_KEY=... trio-tts speak "Real voice." -o real.wav   # the Inworld service
    trio-tts speak --provider rime "Hi." --voice celeste -o rime.wav   # Rime /ws3 (local)
    RIME_API_KEY=... trio-tts speak --provider rime "Hi." -o rime.wav  # the Rime service
    trio-tts serve --port 8765                            # until Ctrl-C
    trio-tts voices --url http://127.0.0.1:8765

Where the audio comes from: ``--url`` if given (``http(s)://host:port`` or a ``ws(s)://``
WebSocket URL), else the provider's service when its key (``--api-key-env``; default
``$INWORLD_API_KEY``, with ``--provider rime`` ``$RIME_API_KEY``) is set, else a local server
started in this process. ``--provider rime`` speaks Rime's ``/ws3`` (one sentence per
connection at a time) or, with ``--http``, its one-shot ``/v1/rime-tts``.

How ``speak`` handles long text, like a printer with several print heads: the text is cut
into sentences, each sentence becomes its own context (up to ``--jobs`` at once, spread over
the pool's connections), and the audio is written to the WAV file strictly in sentence order
as soon as the next sentence in line is complete. At most ``4 × jobs`` finished sentences
wait in memory for a slow predecessor, so memory stays bounded for any length of text.

Errors print one line to stderr: exit status 2 for usage errors and invalid options, 1 for
everything else (130 after Ctrl-C); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import time
import urllib.parse
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import attrs
import trio

from ._errors import HandshakeRejected, InvalidOptions, TTSError
from ._events import Audio
from ._options import VoiceOptions
from ._pool import Pool, open_pool
from ._speak_compressed import output_encoding, write_compressed
from ._text import split_text
from .http import HTTPClient, RimeHTTPClient
from .protocols.inworld import DEFAULT_URL, InworldProvider
from .protocols.rime import DEFAULT_HTTP_URL as RIME_HTTP_URL
from .protocols.rime import DEFAULT_URL as RIME_URL
from .protocols.rime import RimeOptions, RimeProvider

if TYPE_CHECKING:
    from .server import LocalServer

__all__ = ["SpeakResult", "main", "speak", "split_sentences"]

_WS_PATH = "/tts/v1/voice:streamBidirectional"
_PIECE_CHARS = 1000  # Inworld's limit per send_text; also well under voice:stream's 2000
_SENTENCE = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")


# ------------------------------------------------------------------------------ text and URLs


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` into sentences (each at most 1000 characters), whitespace collapsed.

    Example::

        split_sentences("Hi there.  How are\\nyou? Fine!")
        # ['Hi there.', 'How are you?', 'Fine!']
    """
    flat = " ".join(text.split())
    pieces: list[str] = []
    for sentence in _SENTENCE.split(flat):
        for piece in split_text(sentence, _PIECE_CHARS):
            if piece.strip():
                pieces.append(piece.strip())
    return pieces


def service_urls(url: str) -> tuple[str, str]:
    """``(websocket_url, http_base_url)`` for a ``--url`` given in either form.

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise InvalidOptions(f"--url: {url!r} is not an http(s):// or ws(s):// URL with a host")
    secure = parts.scheme in ("https", "wss")
    path = parts.path if parts.scheme.startswith("ws") and parts.path not in ("", "/") else _WS_PATH
    ws = f"{'wss' if secure else 'ws'}://{parts.netloc}{path}"
    return ws, f"{'https' if secure else 'http'}://{parts.netloc}"


def rime_urls(url: str) -> tuple[str, str]:
    """``(websocket_url, http_url)`` of Rime for a ``--url`` given in either form: the
    WebSocket is ``/ws3`` (unless the ws(s) URL names a path), the HTTP endpoint
    ``/v1/rime-tts`` (unless the http(s) URL names a path).

    Raises:
        InvalidOptions: not an http(s):// or ws(s):// URL with a host.
    """
    if url in (RIME_URL, RIME_HTTP_URL):
        return RIME_URL, RIME_HTTP_URL
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise InvalidOptions(f"--url: {url!r} is not an http(s):// or ws(s):// URL with a host")
    secure = parts.scheme in ("https", "wss")
    named = parts.path not in ("", "/")
    ws_path = parts.path if named and parts.scheme.startswith("ws") else "/ws3"
    http_path = parts.path if named and parts.scheme.startswith("http") else "/v1/rime-tts"
    return (
        f"{'wss' if secure else 'ws'}://{parts.netloc}{ws_path}",
        f"{'https' if secure else 'http'}://{parts.netloc}{http_path}",
    )


@attrs.frozen
class _Target:
    """Where the audio comes from: a URL (with an optional key) or an embedded server."""

    url: str | None
    api_key: str | None
    synthesizer: str = "espeak"
    provider: str = "inworld"

    def describe(self) -> str:
        if self.url is None:
            return f"embedded local server ({self.synthesizer})"
        return urllib.parse.urlsplit(self.url).netloc


@asynccontextmanager
async def _endpoints(target: _Target) -> AsyncIterator[tuple[str, str, LocalServer | None]]:
    """Yield ``(ws_url, http_base, server)``, running an embedded local server for the block
    when ``target`` has no URL (``server`` is ``None`` otherwise)."""
    rime = target.provider == "rime"
    if target.url is not None:
        yield (*(rime_urls(target.url) if rime else service_urls(target.url)), None)
        return
    from .server import ServerConfig, open_server

    config = ServerConfig(synthesizer="tone" if target.synthesizer == "tone" else "espeak")
    async with open_server(config) as server:
        if rime:
            yield server.rime_url, server.rime_http_url, server
        else:
            yield server.ws_url, server.base_url, server


# ------------------------------------------------------------------------------------ speak


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


class _Progress:
    """Progress on stderr: one redrawn line on a terminal, else at most a line a second."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.audio = 0.0
        self._tty = stream is not None and stream.isatty()
        self._last = -math.inf
        self._start = time.monotonic()

    def restart(self) -> None:
        self._start = time.monotonic()

    def update(self, done: int, audio: float, *, final: bool = False) -> None:
        self.done, self.audio = done, audio
        if self.stream is None:
            return
        now = time.monotonic()
        if not final and now - self._last < (0.1 if self._tty else 1.0):
            return
        self._last = now
        line = (
            f"[{done}/{self.total} sentences] {audio:.1f} s of audio"
            f" in {now - self._start:.1f} s"
        )
        if self._tty:
            self.stream.write(f"\r{line}" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


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
    (:mod:`trio_tts._speak_compressed`).

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
    if isinstance(opts, VoiceOptions) and not opts.encoding.is_pcm:
        return await _speak_compressed(
            text, Path(output), opts, _Target(url, api_key, synthesizer, provider), use_http,
            progress,
        )  # fmt: skip
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 100:
        raise InvalidOptions(f"jobs: {jobs!r} must be an integer in 1..100")
    sentences = split_sentences(text)
    if not sentences:
        raise InvalidOptions("text: nothing to speak (the text is empty)")
    target = _Target(url, api_key, synthesizer, provider)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with wave.open(str(part), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(opts.sample_rate)
            stats = await _synthesize_all(sentences, wav, opts, target, jobs, use_http, progress)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    duration = sum(stats.durations)
    return SpeakResult(
        path=str(path),
        sample_rate=opts.sample_rate,
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


async def _speak_compressed(
    text: str, path: Path, opts: VoiceOptions, target: _Target, use_http: bool,
    progress_stream: TextIO | None,
) -> SpeakResult:  # fmt: skip
    sentences = split_sentences(text)
    if not sentences:
        raise InvalidOptions("text: nothing to speak (the text is empty)")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    progress = _Progress(len(sentences), progress_stream if len(sentences) > 1 else None)
    try:
        async with _endpoints(target) as (ws_url, http_base, server):
            with part.open("wb") as out:
                stats = await write_compressed(
                    sentences, out, opts, ws_url=ws_url, http_base=http_base,
                    api_key=target.api_key, use_http=use_http, on_sentence=progress.update,
                )  # fmt: skip
            peak = server.statistics().peak_contexts_per_connection if server else None
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    duration = sum(stats.durations)
    progress.update(len(sentences), duration, final=True)
    return SpeakResult(
        path=str(path), sample_rate=opts.sample_rate, duration=duration,
        sentences=len(sentences), words=sum(len(s.split()) for s in sentences),
        time_to_first_audio=stats.time_to_first_audio, elapsed=stats.elapsed,
        real_time_factor=stats.elapsed / duration if duration else math.inf,
        peak_concurrency=1, sentence_durations=tuple(stats.durations),
        source=target.describe(), server_peak_contexts=peak,
    )  # fmt: skip


async def _synthesize_all(
    sentences: list[str],
    wav: wave.Wave_write,
    opts: VoiceOptions | RimeOptions,
    target: _Target,
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
    progress = _Progress(n, progress_stream if n > 1 else None)
    first_audio: float | None = None
    in_flight = peak = written = 0

    async with AsyncExitStack() as stack:
        ws_url, http_base, server = await stack.enter_async_context(_endpoints(target))
        one: SynthesizeOne
        if isinstance(opts, RimeOptions):
            if use_http:
                rime_client = RimeHTTPClient(target.api_key, url=http_base, defaults=opts)
                await stack.enter_async_context(rime_client)
                one = _rime_http_sentence(rime_client)
            else:
                rime = RimeProvider(target.api_key, url=ws_url)
                # One utterance per connection: as many connections as sentences at once.
                rime_pool = await stack.enter_async_context(
                    open_pool(rime, defaults=opts, max_connections=jobs)
                )
                one = _ws_sentence(rime_pool)
        elif use_http:
            client = HTTPClient(target.api_key, base_url=http_base, defaults=opts)
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


def _http_sentence(client: HTTPClient) -> SynthesizeOne:
    """One sentence through one ``voice:stream`` request."""

    async def one(text: str, on_audio: Callable[[], None]) -> bytes:
        pieces: list[bytes] = []
        async with client.stream(text) as chunks:
            async for audio in chunks:
                if audio.data:
                    on_audio()
                    pieces.append(audio.data)
        return b"".join(pieces)

    return one


def _rime_http_sentence(client: RimeHTTPClient) -> SynthesizeOne:
    """One sentence through one Rime ``/v1/rime-tts`` request."""

    async def one(text: str, on_audio: Callable[[], None]) -> bytes:
        pieces: list[bytes] = []
        async with client.stream(text) as chunks:
            async for audio in chunks:
                on_audio()
                pieces.append(audio.data)
        return b"".join(pieces)

    return one


# --------------------------------------------------------------------------- serve, voices


async def _serve(args: argparse.Namespace) -> int:
    from .server import ServerConfig, open_server

    key = args.key or (os.environ.get(args.key_env) if args.key_env else None) or None
    config = ServerConfig(
        host=args.host, port=args.port, api_key=key, synthesizer=args.synth
    )
    # Catching both signals replaces trio's KeyboardInterrupt with a clean, ordered shutdown.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_server(config) as server:
            auth = "Basic key required" if key else "no key"
            print(
                f"trio-tts: serving {server.base_url} (WebSocket {server.ws_url}; {auth});"
                " Ctrl-C to stop",
                flush=True,
            )
            async for signum in signals:
                print(f"trio-tts: {signal.Signals(signum).name}, shutting down", file=sys.stderr)
                break
    return 0


async def _voices(args: argparse.Namespace) -> int:
    target = _target(args)
    async with (
        _endpoints(target) as (_, http_base, _),
        HTTPClient(target.api_key, base_url=http_base) as client,
    ):
        voices = await client.voices(language=args.language)
    if args.json:
        print(json.dumps([attrs.asdict(v) for v in voices], indent=2, ensure_ascii=False))
        return 0
    width = max((len(v.voice_id) for v in voices), default=5)
    for v in voices:
        print(f"{v.voice_id:<{width}}  {','.join(v.languages):<6} {v.description}")
    return 0


def _read_text(args: argparse.Namespace) -> str:
    source = args.file if args.file is not None else args.text
    if source == "-":
        return sys.stdin.read()
    return Path(args.file).read_text("utf-8") if args.file is not None else str(args.text)


async def _speak(args: argparse.Namespace) -> int:
    text = args.text_value
    options = _options(args)
    target = _target(args)
    result = await speak(
        text,
        args.output,
        options=options,
        url=target.url,
        api_key=target.api_key,
        jobs=args.jobs,
        synthesizer=args.synth,
        use_http=args.http,
        progress=None if args.quiet else sys.stderr,
        provider=args.provider,
    )
    if args.json:
        print(json.dumps(attrs.asdict(result)))
    else:
        print(_summary(result))
    return 0


def _summary(r: SpeakResult) -> str:
    rtf = r.real_time_factor
    speed = f"{1 / rtf:.0f}x faster than" if rtf < 1 else "slower than"
    return (
        f"wrote {r.path}: {r.duration:.2f} s of {r.sample_rate} Hz audio, {r.sentences}"
        f" sentence(s), {r.words} words, from {r.source}\n"
        f"time to first audio {r.time_to_first_audio * 1000:.0f} ms; real-time factor"
        f" {r.real_time_factor:.4f} ({speed} real time); {r.peak_concurrency} context(s) at once"
    )


def _options(args: argparse.Namespace) -> VoiceOptions | RimeOptions:
    if getattr(args, "provider", "inworld") == "rime":
        # Rime has no speaking rate: mist models take speedAlpha (larger is slower).
        alpha = None if args.rate == 1.0 else 1.0 / args.rate
        return RimeOptions(
            speaker=args.voice or "astra",
            model=args.model or "arcana",
            sample_rate=args.sample_rate,
            speed_alpha=alpha,
        )
    return VoiceOptions(
        voice=args.voice or "Ashley",
        model=args.model or "inworld-tts-1",
        sample_rate=args.sample_rate,
        speaking_rate=args.rate,
    )


def _target(args: argparse.Namespace) -> _Target:
    provider = getattr(args, "provider", "inworld")
    rime = provider == "rime"
    env = args.api_key_env or ("RIME_API_KEY" if rime else "INWORLD_API_KEY")
    key = os.environ.get(env) or None
    if args.url:
        (rime_urls if rime else service_urls)(args.url)  # validate early
        return _Target(args.url, key, args.synth, provider)
    if key is not None:
        return _Target(RIME_URL if rime else DEFAULT_URL, key, args.synth, provider)
    return _Target(None, None, args.synth, provider)


# ----------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trio-tts", description="Streaming text-to-speech on trio.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def service(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="service URL (http(s):// or ws(s)://); default: see below")
        p.add_argument(
            "--api-key-env",
            default=None,
            metavar="VAR",
            help="environment variable holding the API key (default INWORLD_API_KEY, or"
            " RIME_API_KEY with --provider rime); when it is set and --url is not, the"
            " provider's service is used, else a local server",
        )
        p.add_argument(
            "--synth", choices=("espeak", "tone"), default="espeak", help=argparse.SUPPRESS
        )

    speak_p = sub.add_parser("speak", help="synthesise text into a WAV file")
    speak_p.add_argument("text", nargs="?", help="the text, or - to read stdin")
    speak_p.add_argument("-f", "--file", help="read the text from FILE (- for stdin)")
    speak_p.add_argument(
        "-o", "--output", default="out.wav",
        help="audio file (default out.wav); .ogg/.opus, .mp3 or .flac ask for OGG_OPUS, MP3"
        " or FLAC, synthesised as one stream in one context",
    )  # fmt: skip
    speak_p.add_argument(
        "--provider",
        choices=("inworld", "rime"),
        default="inworld",
        help="the protocol: Inworld (default) or Rime /ws3 (its speakers: astra, celeste ...)",
    )
    speak_p.add_argument("--voice", help="voice / speaker (Ashley; Rime: astra)")
    speak_p.add_argument("--model", help="model (inworld-tts-1; Rime: arcana)")
    speak_p.add_argument("--rate", type=float, default=1.0, help="speaking rate 0.5..1.5")
    speak_p.add_argument("--sample-rate", type=int, default=24000, metavar="HZ")
    speak_p.add_argument("-j", "--jobs", type=int, default=4, help="sentences at once (4)")
    speak_p.add_argument("--http", action="store_true", help="use HTTP voice:stream requests")
    speak_p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    speak_p.add_argument("--json", action="store_true", help="print the summary as JSON")
    service(speak_p)

    serve_p = sub.add_parser("serve", help="run the local speech server until Ctrl-C")
    serve_p.add_argument("--host", default="127.0.0.1")
    serve_p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve_p.add_argument("--key", help="require this API key (Authorization: Basic <key>)")
    serve_p.add_argument("--key-env", metavar="VAR", help="require the key in $VAR")
    serve_p.add_argument(
        "--synth", choices=("espeak", "tone"), default="espeak", help=argparse.SUPPRESS
    )

    voices_p = sub.add_parser("voices", help="list the voices")
    voices_p.add_argument("--language", help="only voices of this language (en, fr ...)")
    voices_p.add_argument("--json", action="store_true")
    service(voices_p)
    return parser


# ------------------------------------------------------------------------------------- main


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _explain(exc: BaseException) -> tuple[int, str]:
    """The exit status and one-line message for an error that ended a command."""
    leaves = _leaves(exc)
    chosen = next((e for e in leaves if isinstance(e, TTSError)), None) or next(
        (e for e in leaves if isinstance(e, OSError)), leaves[0]
    )
    if isinstance(chosen, BrokenPipeError):
        return 1, ""  # stdout went away (``trio-tts voices | head``): nothing to say
    if isinstance(chosen, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(chosen, InvalidOptions):
        return 2, str(chosen)
    if isinstance(chosen, HandshakeRejected) and chosen.is_auth_error:
        return 1, f"{chosen} (check the API key)"
    if isinstance(chosen, TTSError):
        return 1, str(chosen)
    if isinstance(chosen, OSError):
        where = f": {chosen.filename}" if chosen.filename else ""
        return 1, f"{chosen.strerror or chosen}{where}"
    return 1, f"internal error: {type(chosen).__name__}: {chosen} (--debug shows the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """The ``trio-tts`` console script. Returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "speak" and (args.text is None) == (args.file is None):
        parser.error("speak: give the text or -f FILE (exactly one)")
    commands = {"speak": _speak, "serve": _serve, "voices": _voices}
    try:
        if args.command == "speak":
            args.text_value = _read_text(args)
        status: int = trio.run(commands[args.command], args)
    except BaseException as exc:
        if args.debug or isinstance(exc, SystemExit):
            raise
        code, message = _explain(exc)
        if message:
            print(f"trio-tts: error: {message}", file=sys.stderr)
        return code
    return status


if __name__ == "__main__":
    sys.exit(main())
