"""The sans-io Rime codec, options and provider: plain pytest, no event loop."""

from __future__ import annotations

import json
import urllib.parse

import pytest

import trio_tts
from trio_tts._core.events import (
    Audio,
    ConnectionErrorEvent,
    ContextClosed,
    ContextError,
    FlushCompleted,
    WordTiming,
)
from trio_tts.providers.rime.codec import RimeCodec
from trio_tts.providers.rime.http import request_body
from trio_tts.providers.rime.options import RimeOptions
from trio_tts.providers.rime.provider import RimeProvider, ws_query


def frames(out: list[str]) -> list[dict[str, object]]:
    return [json.loads(f) for f in out]


def chunk(data: bytes = b"\x01\x02", cid: str | None = "c1") -> str:
    import base64

    body: dict[str, object] = {"type": "chunk", "data": base64.b64encode(data).decode()}
    if cid is not None:
        body["contextId"] = cid
    return json.dumps(body)


def done(cid: str | None = "c1") -> str:
    return json.dumps({"type": "done", "contextId": cid})


# ------------------------------------------------------------------------ options and URLs


def test_url_carries_every_option_in_the_query() -> None:
    provider = RimeProvider("k3y-secret", url="ws://127.0.0.1:9/ws3")
    opts = RimeOptions(speaker="celeste", model="arcana", sample_rate=16000, language="eng",
                       segment="immediate", temperature=0.5, top_p=1, repetition_penalty=1.5,
                       max_tokens=1200)  # fmt: skip
    url = provider.url(opts)
    split = urllib.parse.urlsplit(url)
    assert (split.scheme, split.netloc, split.path) == ("ws", "127.0.0.1:9", "/ws3")
    assert dict(urllib.parse.parse_qsl(split.query)) == {
        "speaker": "celeste", "modelId": "arcana", "audioFormat": "pcm",
        "samplingRate": "16000", "segment": "immediate", "lang": "eng",
        "repetition_penalty": "1.5", "temperature": "0.5", "top_p": "1", "max_tokens": "1200",
    }  # fmt: skip
    assert provider.connection_key(opts) == url
    assert provider.headers() == [("Authorization", "Bearer k3y-secret")]
    assert "k3y-secret" not in repr(provider)
    assert (provider.contexts_per_connection, provider.max_session_duration) == (1, 300.0)
    assert provider.default_options() == RimeOptions()


def test_mist_parameters_and_booleans() -> None:
    opts = RimeOptions(speaker="cove", model="mistv2", speed_alpha=1.2,
                       pause_between_brackets=True, phonemize_between_brackets=False)  # fmt: skip
    assert ws_query(opts) == {
        "speaker": "cove", "modelId": "mistv2", "audioFormat": "pcm", "samplingRate": "24000",
        "segment": "bySentence", "lang": "eng", "speedAlpha": "1.2",
        "pauseBetweenBrackets": "true", "phonemizeBetweenBrackets": "false",
    }  # fmt: skip


def test_time_scale_factor_in_query_and_body_for_every_model_but_mistv2() -> None:
    for model in ("arcana", "coda", "mistv3"):
        opts = RimeOptions(model=model, time_scale_factor=1.25)
        assert ws_query(opts)["timeScaleFactor"] == "1.25"
        assert request_body("Hi.", opts)["timeScaleFactor"] == 1.25
    assert "timeScaleFactor" not in ws_query(RimeOptions())


def test_default_endpoint_and_a_bare_host_get_ws3() -> None:
    assert RimeProvider().url(RimeOptions()).startswith("wss://users-ws.rime.ai/ws3?speaker=")
    assert RimeProvider(url="ws://h:1").url(RimeOptions()).startswith("ws://h:1/ws3?")


def test_websocket_path_refuses_http_only_options_up_front() -> None:
    opts = RimeOptions(model="mistv2", speaker="cove", reduce_latency=True)
    with pytest.raises(trio_tts.InvalidOptions, match=r"^reduce_latency: an HTTP-only option"):
        RimeProvider().connection_key(opts)
    # ...which the HTTP body carries.
    assert request_body("Hi.", opts)["reduceLatency"] is True
    with pytest.raises(trio_tts.InvalidOptions, match=r"^options: expected RimeOptions, got "):
        RimeProvider().connection_key(trio_tts.VoiceOptions())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"speed_alpha": 1.0}, r"^speed_alpha: not a parameter of arcana models"),
        ({"model": "mistv2", "top_p": 0.5}, r"^top_p: not a parameter of mist models"),
        ({"segment": "bySentences"}, r"^segment: 'bySentences' is not one of "),
        ({"sample_rate": 12345}, r"^sample_rate: 12345 is not one of "),
        ({"speaker": " "}, r"^speaker: must be a non-empty string$"),
        ({"temperature": 3}, r"^temperature: 3 must be in 0..2$"),
        ({"max_tokens": 0}, r"^max_tokens: 0 must be a positive integer$"),
        ({"time_scale_factor": 0}, r"^time_scale_factor: 0 must be a positive number$"),
        (
            {"model": "mistv2", "time_scale_factor": 1.1},
            r"^time_scale_factor: not supported by the mistv2 model$",
        ),
        ({"voice": "x"}, r"^unknown option\(s\): voice$"),
    ],
)
def test_invalid_options(changes: dict[str, object], message: str) -> None:
    with pytest.raises(trio_tts.InvalidOptions, match=message):
        RimeOptions().replace(**changes)


def test_options_share_what_the_engine_reads() -> None:
    opts = RimeOptions(speaker="luna", sample_rate=22050)
    pcm = trio_tts.AudioEncoding.PCM
    assert (opts.voice, opts.sample_rate, opts.encoding) == ("luna", 22050, pcm)


def test_http_body_is_the_seeds() -> None:
    assert request_body("Hello.", RimeOptions(temperature=0.3)) == {
        "speaker": "astra", "text": "Hello.", "modelId": "arcana", "lang": "eng",
        "temperature": 0.3, "samplingRate": 24000,
    }  # fmt: skip


# ------------------------------------------------------------------------------ the codec


def test_one_utterance_text_flush_close_done() -> None:
    codec = RimeCodec()
    assert codec.create("c1", RimeOptions()) == []
    assert frames(codec.send_text("c1", "Hello there. ")) == [
        {"text": "Hello there. ", "contextId": "c1"}
    ]
    assert frames(codec.flush("c1")) == [{"operation": "flush", "contextId": "c1"}]
    assert frames(codec.send_text("c1", "Bye.", flush=True)) == [
        {"text": "Bye.", "contextId": "c1"},
        {"operation": "flush", "contextId": "c1"},
    ]
    assert codec.close("c1") == []  # everything is flushed: wait for the dones
    ts = {"type": "timestamps", "contextId": "c1",
          "word_timestamps": {"words": ["Hello", "there."], "start": [0.0, 0.4],
                              "end": [0.3, 0.7]}}  # fmt: skip
    assert codec.receive(chunk()) == [Audio("c1", b"\x01\x02")]
    assert codec.receive(json.dumps(ts)) == [
        Audio("c1", b"", (WordTiming("Hello", 0.0, 0.3), WordTiming("there.", 0.4, 0.7)))
    ]
    assert codec.receive(done()) == [FlushCompleted("c1")]
    assert codec.state == "closing"
    assert codec.receive(done()) == [FlushCompleted("c1"), ContextClosed("c1")]
    assert codec.state == "idle" and codec.take_events() == []


def test_close_flushes_the_rest_and_its_done_closes() -> None:
    codec = RimeCodec()
    codec.create("c1", RimeOptions())
    codec.send_text("c1", "Hello.")
    assert frames(codec.close("c1")) == [{"operation": "flush", "contextId": "c1"}]
    assert codec.send_text("c1", "more") == []  # closing: nothing more goes out
    assert codec.receive(done()) == [ContextClosed("c1")]


def test_empty_input_finishes_at_once_without_the_server() -> None:
    codec = RimeCodec()
    codec.create("c1", RimeOptions())
    assert codec.send_text("c1", "") == []
    assert codec.flush("c1") == [] and codec.take_events() == [FlushCompleted("c1")]
    assert codec.close("c1") == []
    assert codec.take_events() == [ContextClosed("c1")]
    assert codec.state == "idle"
    assert codec.create("c2", RimeOptions()) == []  # the connection is clean


def test_cancel_clears_and_only_the_done_after_it_proves_the_drain() -> None:
    codec = RimeCodec()
    codec.create("c1", RimeOptions())
    codec.send_text("c1", "A long story. ")
    assert frames(codec.cancel("c1")) == [
        {"operation": "clear", "contextId": "c1"},
        {"operation": "flush", "contextId": "c1"},
    ]
    assert codec.cancel("c1") == []
    assert codec.state == "draining"
    # Late audio still belongs to c1 (its context drops it), never to anyone else...
    assert codec.receive(chunk()) == [Audio("c1", b"\x01\x02")]
    assert codec.receive(chunk(cid=None)) == [Audio("c1", b"\x01\x02")]
    # ...an error while draining does not end the wait...
    assert codec.receive('{"type": "error", "message": "nothing to clear"}') == []
    # ...and a new utterance on this connection is refused until the done.
    with pytest.raises(trio_tts.ProtocolError, match="not drained"):
        codec.create("c2", RimeOptions())
    assert codec.receive(done()) == [ContextClosed("c1")]
    assert codec.create("c2", RimeOptions()) == []


def test_cancel_of_flushed_text_waits_for_every_done() -> None:
    codec = RimeCodec()
    codec.create("c1", RimeOptions())
    codec.send_text("c1", "One.", flush=True)
    codec.cancel("c1")
    assert codec.receive(done()) == []  # the first flush's: no FlushCompleted once cancelled
    assert codec.receive(done()) == [ContextClosed("c1")]


def test_frames_of_other_contexts_are_strays() -> None:
    codec = RimeCodec()
    codec.create("c1", RimeOptions())
    codec.send_text("c1", "Hi.")
    codec.close("c1")
    codec.receive(done())
    # Idle: untagged audio goes to the finished context's id, tagged audio to its tag.
    assert codec.receive(chunk(cid=None)) == [Audio("c1", b"\x01\x02")]
    codec.create("c2", RimeOptions())
    assert codec.receive(chunk(cid="c1")) == [Audio("c1", b"\x01\x02")]
    assert codec.receive(done("c1")) == []  # a done for another context ends nothing
    assert codec.receive(done("c2")) == []  # one that answers no flush of ours neither
    assert (codec.stray_frames, codec.ignored_dones) == (3, 1)
    assert codec.state == "streaming"


def test_errors() -> None:
    codec = RimeCodec()
    assert codec.receive('{"type": "error", "message": "bad"}') == [
        ConnectionErrorEvent(None, "bad")
    ]
    codec.create("c1", RimeOptions())
    assert codec.receive('{"type": "error", "message": "bad"}') == [ContextError("c1", None, "bad")]
    assert codec.receive('{"type": "usage", "n": 1}') == [] and codec.unknown_frames == 1
    for bad in ('{"type": "chunk", "data": "!!"}', "not json", '{"data": "AA=="}', b"\x00"):
        with pytest.raises(trio_tts.ProtocolError):
            codec.receive(bad)


def test_goodbye_is_eos() -> None:
    assert frames(RimeCodec().goodbye()) == [{"operation": "eos"}]
