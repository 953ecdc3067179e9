"""``trio-tts speak -o out.ogg|.mp3|.flac``: compressed output files.

The file name picks the encoding (:func:`output_encoding`): ``.wav`` is 16-bit PCM written by
``speak`` itself (sentences synthesised in parallel, several contexts), ``.ogg``/``.opus``
asks the service for ``OGG_OPUS``, ``.mp3`` for ``MP3`` and ``.flac`` for ``FLAC``.

A compressed file must be **one** stream: the chunks of several contexts are several
independent streams (several Ogg logical streams, several FLAC headers), and gluing them
together does not make a file that plays everywhere. So a compressed file comes from a
**single context**: every sentence is sent to it in order, each with a flush (audio streams
as each sentence is done), and every chunk is written to the file as it arrives. The
service keeps one continuous stream per context across flushes. Over HTTP (``--http``) it is
a single ``voice:stream`` request, so the whole text must fit in one (2000 characters). The
price is parallelism: ``--jobs`` does not apply to compressed output (decoding and
re-encoding locally would need a codec library on the client side).

Durations come from the word timings (asked for with ``timestampType: WORD``): the encoded
length is not known without decoding.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import attrs
import trio

from .._core.errors import InvalidOptions
from .._core.events import Audio, FlushCompleted
from .._core.options import AudioEncoding
from .._core.pool import open_pool
from ..providers.inworld.http import InworldHTTPClient
from ..providers.inworld.options import VoiceOptions
from ..providers.inworld.provider import InworldProvider

__all__ = ["CompressedStats", "output_encoding", "write_compressed"]

_SUFFIXES = {
    ".ogg": AudioEncoding.OGG_OPUS,
    ".opus": AudioEncoding.OGG_OPUS,
    ".oga": AudioEncoding.OGG_OPUS,
    ".mp3": AudioEncoding.MP3,
    ".flac": AudioEncoding.FLAC,
}
HTTP_MAX_CHARS = 2000


def output_encoding(path: str | os.PathLike[str]) -> AudioEncoding:
    """The encoding a file name asks for: ``LINEAR16`` (WAV) unless it ends in ``.ogg``,
    ``.opus``, ``.oga``, ``.mp3`` or ``.flac``."""
    return _SUFFIXES.get(Path(path).suffix.lower(), AudioEncoding.LINEAR16)


@attrs.frozen
class CompressedStats:
    time_to_first_audio: float
    elapsed: float
    #: Seconds of audio per sentence (from the word timings; all in one for HTTP).
    durations: list[float]


async def write_compressed(
    sentences: list[str],
    out: BinaryIO,
    options: VoiceOptions,
    *,
    ws_url: str,
    http_base: str,
    api_key: str | None,
    use_http: bool,
    on_sentence: Callable[[int, float], None] = lambda done, audio: None,
) -> CompressedStats:
    """Synthesise ``sentences`` as one compressed stream into ``out`` (see the module doc).

    Raises:
        InvalidOptions: ``options`` not compressed, or too much text for one HTTP request.
        TTSError: from the pool or the HTTP client.
    """
    if options.encoding.is_pcm:
        raise InvalidOptions(f"encoding: {options.encoding} is not a compressed encoding")
    opts = options.replace(timestamp_type="WORD")
    start = trio.current_time()
    first: float | None = None
    ends: list[float] = []
    last_end = 0.0

    def wrote(audio: Audio) -> None:
        nonlocal first, last_end
        if audio.data:
            out.write(audio.data)
            if first is None:
                first = trio.current_time() - start
        if audio.words:
            last_end = max(last_end, audio.words[-1].end)

    if use_http:
        text = " ".join(sentences)
        if len(text) > HTTP_MAX_CHARS:
            raise InvalidOptions(
                f"text: {len(text)} characters do not fit one HTTP request ({HTTP_MAX_CHARS})"
                f" and a {options.encoding} file must be one stream; drop --http"
            )
        client = InworldHTTPClient(api_key, base_url=http_base, defaults=opts)
        async with client, client.stream(text) as chunks:
            async for audio in chunks:
                wrote(audio)
        ends.append(last_end)
    else:
        provider = InworldProvider(api_key, url=ws_url)
        async with open_pool(provider, defaults=opts, max_connections=1) as pool:
            ctx = await pool.open_context()
            async with ctx:

                async def feed() -> None:
                    for sentence in sentences:
                        await ctx.send_text(sentence, flush=True)
                    await ctx.finish()

                # Holds the sender, so reading starts at once (audio flows while text goes).
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(feed)
                    async for event in ctx:
                        if isinstance(event, Audio):
                            wrote(event)
                        elif isinstance(event, FlushCompleted) and len(ends) < len(sentences):
                            ends.append(last_end)
                            on_sentence(len(ends), last_end)
        while len(ends) < len(sentences):
            ends.append(last_end)
    elapsed = trio.current_time() - start
    durations = [b - a for a, b in zip([0.0, *ends], ends, strict=False)]
    return CompressedStats(first if first is not None else elapsed, elapsed, durations)
