"""The ``trio-tts`` commands (``speak``, ``serve``, ``voices``): parsed arguments in, exit
status out. :mod:`trio_tts.cli` parses the command line and explains errors."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import attrs
import trio

from ..providers.cartesia.http import CartesiaHTTPClient
from ..providers.cartesia.options import DEFAULT_VOICE as CARTESIA_VOICE
from ..providers.cartesia.options import CartesiaOptions
from ..providers.cartesia.provider import DEFAULT_URL as CARTESIA_URL
from ..providers.elevenlabs.http import ElevenLabsHTTPClient
from ..providers.elevenlabs.options import ElevenLabsOptions, VoiceSettings
from ..providers.elevenlabs.provider import API_KEY_VARIABLES as ELEVENLABS_KEY_VARIABLES
from ..providers.elevenlabs.provider import DEFAULT_URL as ELEVENLABS_URL
from ..providers.inworld.http import InworldHTTPClient
from ..providers.inworld.options import VoiceOptions
from ..providers.inworld.provider import DEFAULT_URL
from ..providers.rime.options import RimeOptions
from ..providers.rime.provider import DEFAULT_URL as RIME_URL
from .common import Target, cartesia_urls, elevenlabs_urls, endpoints, rime_urls, service_urls
from .speak import SpeakResult, speak

__all__ = ["read_text", "serve_command", "speak_command", "voices_command"]

#: Per provider: the environment variable of its key and its service's URL.


async def serve_command(args: argparse.Namespace) -> int:
    from ..server import ServerConfig, open_server

    key = args.key or (os.environ.get(args.key_env) if args.key_env else None) or None
    config = ServerConfig(
        host=args.host, port=args.port, api_key=key, synthesizer=args.synth,
        elevenlabs_max_contexts=args.el_max_contexts or None,
        elevenlabs_limit_action=args.el_limit_action,
    )  # fmt: skip
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


async def voices_command(args: argparse.Namespace) -> int:
    target = _target(args)
    if target.provider == "elevenlabs":
        return await _elevenlabs_voices(args, target)
    cartesia = target.provider == "cartesia"
    client_class = CartesiaHTTPClient if cartesia else InworldHTTPClient
    async with (
        endpoints(target) as (_, http_base, _),
        client_class(target.api_key, base_url=http_base) as client,
    ):
        voices = await client.voices(language=args.language)
    if args.json:
        print(json.dumps([attrs.asdict(v) for v in voices], indent=2, ensure_ascii=False))
        return 0
    width = max((len(v.voice_id) for v in voices), default=5)
    for v in voices:
        # Cartesia's ids are UUIDs: the name says which voice it is.
        about = f"{v.display_name}: {v.description}" if cartesia else v.description
        print(f"{v.voice_id:<{width}}  {','.join(v.languages):<6} {about}")
    return 0


async def _elevenlabs_voices(args: argparse.Namespace, target: Target) -> int:
    """ElevenLabs' ``GET /v1/voices``: id, name, category, and the labels (``--language``
    keeps the voices whose ``language`` label is that one)."""
    async with (
        endpoints(target) as (_, http_base, _),
        ElevenLabsHTTPClient(target.api_key, base_url=http_base) as client,
    ):
        voices = await client.voices()
    if args.language:
        voices = [v for v in voices if dict(v.labels).get("language") == args.language]
    if args.json:
        print(json.dumps([attrs.asdict(v) for v in voices], indent=2, ensure_ascii=False))
        return 0
    width = max((len(v.voice_id) for v in voices), default=8)
    for v in voices:
        labels = ", ".join(f"{k}={value}" for k, value in v.labels)
        print(f"{v.voice_id:<{width}}  {v.name:<12} {v.category:<10} {labels}".rstrip())
    return 0


def read_text(args: argparse.Namespace) -> str:
    """The text ``speak`` was given: the argument, ``-f FILE`` or stdin (``-``)."""
    source = args.file if args.file is not None else args.text
    if source == "-":
        return sys.stdin.read()
    return Path(args.file).read_text("utf-8") if args.file is not None else str(args.text)


async def speak_command(args: argparse.Namespace) -> int:
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


def _options(
    args: argparse.Namespace,
) -> VoiceOptions | RimeOptions | ElevenLabsOptions | CartesiaOptions:
    provider = getattr(args, "provider", "inworld")
    if provider == "elevenlabs":
        # The sample rate picks the raw PCM format; the rate is ElevenLabs' speed (0.7..1.2).
        settings = None if args.rate == 1.0 else VoiceSettings(speed=args.rate)
        return ElevenLabsOptions(
            **({"voice_id": args.voice} if args.voice else {}),
            **({"model": args.model} if args.model else {}),
            output_format=f"pcm_{args.sample_rate}",
            voice_settings=settings,
        )
    if provider == "cartesia":
        return CartesiaOptions(
            voice=args.voice or CARTESIA_VOICE,
            model=args.model or "sonic-3",
            sample_rate=args.sample_rate,
            speed=None if args.rate == 1.0 else args.rate,
        )
    if provider == "rime":
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


#: Per provider: the variables holding its key (the first that is set wins), its service, and
#: how a ``--url`` maps onto its endpoints.
_SERVICES = {
    "inworld": (("INWORLD_API_KEY",), DEFAULT_URL, service_urls),
    "rime": (("RIME_API_KEY",), RIME_URL, rime_urls),
    "elevenlabs": (ELEVENLABS_KEY_VARIABLES, ELEVENLABS_URL, elevenlabs_urls),
    "cartesia": (("CARTESIA_API_KEY",), CARTESIA_URL, cartesia_urls),
}


def _target(args: argparse.Namespace) -> Target:
    provider = getattr(args, "provider", "inworld")
    variables, service, urls = _SERVICES[provider]
    names = (args.api_key_env,) if args.api_key_env else variables
    key = next((os.environ[n] for n in names if os.environ.get(n)), None)
    if args.url:
        urls(args.url)  # validate early
        return Target(args.url, key, args.synth, provider)
    if key is not None:
        return Target(service, key, args.synth, provider)
    return Target(None, None, args.synth, provider)
