"""Inworld, Rime, ElevenLabs and Cartesia are peers: the same four modules, the same shape of
names in each, and a core that names none of them."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest
from typing_extensions import get_protocol_members

import trio_tts
import trio_tts.http
from trio_tts._core.provider import OptionsT

ROOT = Path(trio_tts.__file__).resolve().parent
MODULES = ("codec", "http", "options", "provider")
# Per provider: the options class, codec, provider, HTTP client and HTTP audio stream (None:
# the HTTP client lists voices only, it does not synthesise).
NAMES: dict[str, tuple[str, str, str, str, str | None]] = {
    "inworld": ("VoiceOptions", "InworldCodec", "InworldProvider", "InworldHTTPClient",
                "InworldAudioStream"),
    "rime": ("RimeOptions", "RimeCodec", "RimeProvider", "RimeHTTPClient", "RimeAudioStream"),
    "elevenlabs": ("ElevenLabsOptions", "ElevenLabsCodec", "ElevenLabsProvider",
                   "ElevenLabsHTTPClient", "ElevenLabsAudioStream"),
    "cartesia": ("CartesiaOptions", "CartesiaCodec", "CartesiaProvider", "CartesiaHTTPClient",
                 "CartesiaAudioStream"),
}  # fmt: skip
#: The HTTP clients that also list voices (typed, and as the service sent them).
LISTS_VOICES = {"inworld", "elevenlabs", "cartesia"}


def module(provider: str, name: str) -> ModuleType:
    return importlib.import_module(f"trio_tts.providers.{provider}.{name}")


def implements(obj: object, protocol: type) -> bool:
    return all(hasattr(obj, name) for name in get_protocol_members(protocol))


def public_methods(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("_")}


def test_every_provider_is_the_same_four_modules() -> None:
    for provider in NAMES:
        files = {p.stem for p in (ROOT / "providers" / provider).glob("*.py")}
        assert files == {"__init__", *MODULES}, provider
        for name in MODULES:
            mod = module(provider, name)
            assert mod.__doc__, mod.__name__
            assert all(hasattr(mod, n) for n in mod.__all__), mod.__name__


@pytest.mark.parametrize("provider", list(NAMES))
def test_each_provider_defines_the_same_kinds_of_names(provider: str) -> None:
    options, codec, prov, client, stream = NAMES[provider]
    assert options in module(provider, "options").__all__
    assert codec in module(provider, "codec").__all__
    assert {prov, "DEFAULT_URL"} <= set(module(provider, "provider").__all__)
    http_names = set(module(provider, "http").__all__)
    assert {client, "DEFAULT_HTTP_URL"} <= http_names
    if stream is not None:
        assert {stream, "request_body"} <= http_names
    opts = getattr(module(provider, "options"), options)()
    assert implements(opts, trio_tts.Options)  # voice, sample_rate, encoding, replace
    provider_obj = getattr(module(provider, "provider"), prov)()
    assert implements(provider_obj, trio_tts.Provider)
    assert implements(provider_obj.new_codec(), trio_tts.ClientCodec)
    assert type(provider_obj.new_codec()).__name__ == codec
    assert provider_obj.default_options() == opts


def test_the_peers_have_the_same_public_methods() -> None:
    first, *others = NAMES
    for mod, index in (("codec", 1), ("provider", 2)):
        expected = public_methods(getattr(module(first, mod), NAMES[first][index]))
        for provider in others:
            cls = getattr(module(provider, mod), NAMES[provider][index])
            assert public_methods(cls) == expected, (provider, mod)
    clients = {p: public_methods(getattr(module(p, "http"), NAMES[p][3])) for p in NAMES}
    common = set.intersection(*clients.values())
    for provider, methods in clients.items():
        extra = {"voices", "voice_rows"} if provider in LISTS_VOICES else set()
        assert methods - common == extra, provider
    for provider, names in NAMES.items():
        if names[4] is not None:
            stream = getattr(module(provider, "http"), names[4])
            assert all(callable(getattr(stream, name, None)) for name in ("__aiter__", "__anext__"))


def test_options_are_importable_from_their_provider_and_from_trio_tts() -> None:
    for provider, (options, _, prov, client, stream) in NAMES.items():
        assert getattr(trio_tts, options) is getattr(module(provider, "options"), options)
        assert getattr(trio_tts, prov) is getattr(module(provider, "provider"), prov)
        assert getattr(trio_tts.http, client) is getattr(module(provider, "http"), client)
        if stream is not None:
            assert getattr(trio_tts.http, stream) is getattr(module(provider, "http"), stream)
    assert trio_tts.VoiceOptions is module("inworld", "options").VoiceOptions
    assert trio_tts.RimeOptions is module("rime", "options").RimeOptions
    assert trio_tts.ElevenLabsOptions is module("elevenlabs", "options").ElevenLabsOptions
    assert trio_tts.ElevenLabsProvider is module("elevenlabs", "provider").ElevenLabsProvider
    assert trio_tts.http.ElevenLabsHTTPClient is module("elevenlabs", "http").ElevenLabsHTTPClient
    from trio_tts import RimeOptions, VoiceOptions
    from trio_tts.providers.inworld.options import VoiceOptions as InworldOptions
    from trio_tts.providers.rime.options import RimeOptions as RimeOwnOptions

    assert (VoiceOptions, RimeOptions) == (InworldOptions, RimeOwnOptions)


def test_request_rejected_is_an_http_error_not_a_websocket_one() -> None:
    assert trio_tts.http.RequestRejected is trio_tts.RequestRejected
    assert issubclass(trio_tts.RequestRejected, trio_tts.TTSError)
    assert not issubclass(trio_tts.RequestRejected, trio_tts.HandshakeRejected)
    assert not issubclass(trio_tts.RequestRejected, trio_tts.ConnectionLost)
    error = trio_tts.RequestRejected(429, "slow down", 3.0, request="POST rime-tts")
    assert (error.status, error.retry_after, error.is_auth_error) == (429, 3.0, False)
    assert str(error) == "POST rime-tts rejected with HTTP 429: slow down"
    assert trio_tts.RequestRejected(401).is_auth_error


def test_the_http_module_keeps_every_name_the_readme_and_earlier_versions_use() -> None:
    for name in (
        "HTTPClient", "RimeHTTPClient", "InworldHTTPClient", "RequestRejected", "AudioStream",
        "Synthesis", "Voice", "request_body", "DEFAULT_HTTP_URL", "STREAM_PATH", "VOICES_PATH",
    ):  # fmt: skip
        assert hasattr(trio_tts.http, name), name
    assert trio_tts.http.HTTPClient is trio_tts.http.InworldHTTPClient
    assert trio_tts.http.AudioStream is trio_tts.http.InworldAudioStream


def test_the_core_names_no_provider() -> None:
    assert OptionsT.__default__ is trio_tts.Options  # type: ignore[attr-defined]
    for path in (ROOT / "_core").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                assert "providers" not in target, (path.name, target)
            elif isinstance(node, ast.Import):
                assert not any("providers" in a.name for a in node.names), path.name
