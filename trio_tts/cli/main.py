"""``trio-tts``: speak text into an audio file, run the local speech server, list voices.

::

    trio-tts speak "Hello there." -o hello.wav          # embedded local server (eSpeak NG)
    trio-tts speak -f chapter.txt -o chapter.wav --jobs 8
    trio-tts speak -f chapter.txt -o chapter.mp3         # also .flac, .ogg
    echo "From stdin." | trio-tts speak - -o out.wav
    INWORLD_API_KEY=... trio-tts speak "Real voice." -o real.wav   # the Inworld service
    trio-tts speak --provider rime "Hi." --voice celeste -o rime.wav   # Rime /ws3 (local)
    RIME_API_KEY=... trio-tts speak --provider rime "Hi." -o rime.wav  # the Rime service
    trio-tts speak --provider elevenlabs "Hi." -o el.wav  # ElevenLabs multi-stream-input (local)
    ELEVENLABS_API_KEY=... trio-tts speak --provider elevenlabs "Hi." -o el.wav   # ElevenLabs
    trio-tts speak --provider cartesia "Hi." -o cartesia.wav          # Cartesia (local)
    CARTESIA_API_KEY=... trio-tts speak --provider cartesia "Hi." -o c.wav  # the service
    trio-tts voices --provider cartesia                                # Cartesia's voices
    trio-tts serve --port 8765                            # until Ctrl-C
    trio-tts voices --url http://127.0.0.1:8765
    trio-tts voices --provider elevenlabs                 # GET /v1/voices
    trio-tts top 9464                                     # a pool's live view (metrics_port)

Where the audio comes from: ``--url`` if given (``http(s)://host:port`` or a ``ws(s)://``
WebSocket URL), else the provider's service when its key (``--api-key-env``; default
``$INWORLD_API_KEY``, with ``--provider rime`` ``$RIME_API_KEY``, with ``--provider
elevenlabs`` ``$ELEVENLABS_API_KEY`` or ``$ELEVEN_API_KEY``, with ``--provider cartesia``
``$CARTESIA_API_KEY``) is set, else a local server started in this process. ``--provider
rime`` speaks Rime's ``/ws3`` (one sentence per connection at a time) or, with ``--http``, its
one-shot ``/v1/rime-tts``. ``--provider elevenlabs`` speaks ElevenLabs' multi-context
WebSocket (five sentences per connection, at most 15 at once: the account's concurrency); its
``--rate`` is ElevenLabs' speed (0.7..1.2). ``--provider cartesia`` speaks Cartesia's
``/tts/websocket`` (every sentence a context on one connection: ``--jobs`` must not exceed the
plan's concurrency) or, with ``--http``, its ``/tts/bytes``.

How ``speak`` handles long text, like a printer with several print heads: the text is cut
into sentences, each sentence becomes its own context (up to ``--jobs`` at once, spread over
the pool's connections), and the audio is written to the file strictly in sentence order as
soon as the next sentence in line is complete. At most ``4 × jobs`` finished sentences wait
in memory for a slow predecessor, so memory stays bounded for any length of text. The file
name picks the format (``.wav``, ``.flac``, ``.mp3``, ``.ogg``): the service sends PCM, and
compressed files are encoded here with libsndfile (:mod:`trio_tts.cli.output`).

Errors print one line to stderr: exit status 2 for usage errors and invalid options, 1 for
everything else (130 after Ctrl-C); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import trio

from .commands import read_text, serve_command, speak_command, voices_command
from .common import explain_error
from .common import rime_urls as rime_urls
from .common import service_urls as service_urls
from .common import split_sentences as split_sentences
from .interrupt import Interrupts, run_interruptibly
from .speak import SpeakResult as SpeakResult
from .speak import speak as speak
from .top import top_command

__all__ = ["SpeakResult", "main", "speak", "split_sentences"]


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
            help="environment variable holding the API key (default INWORLD_API_KEY;"
            " RIME_API_KEY with --provider rime; ELEVENLABS_API_KEY or ELEVEN_API_KEY with"
            " --provider elevenlabs; CARTESIA_API_KEY with --provider cartesia); when it is set"
            " and --url is not, the provider's service is used, else a local server",
        )
        p.add_argument(
            "--synth", choices=("espeak", "tone"), default="espeak", help=argparse.SUPPRESS
        )

    speak_p = sub.add_parser("speak", help="synthesise text into an audio file")
    speak_p.add_argument("text", nargs="?", help="the text, or - to read stdin")
    speak_p.add_argument("-f", "--file", help="read the text from FILE (- for stdin)")
    speak_p.add_argument(
        "-o", "--output", default="out.wav",
        help="audio file (default out.wav): .wav, .flac, .mp3 or .ogg/.opus/.oga (Opus). The"
        " service sends PCM and the file is encoded here with libsndfile (the soundfile"
        " package), sentences in parallel (--jobs), headers complete",
    )  # fmt: skip
    speak_p.add_argument(
        "--provider",
        choices=("inworld", "rime", "elevenlabs", "cartesia"),
        default="inworld",
        help="the protocol: Inworld (default), Rime /ws3 (its speakers: astra, celeste ...),"
        " ElevenLabs multi-stream-input (voice ids: hpp4J3VqNfWAUOO0d1Us ...) or Cartesia"
        " /tts/websocket (voice ids: trio-tts voices --provider cartesia)",
    )
    speak_p.add_argument(
        "--voice",
        help="voice / speaker (Ashley; Rime: astra; ElevenLabs, Cartesia: a voice id)",
    )
    speak_p.add_argument(
        "--model",
        help="model (inworld-tts-1; Rime: arcana; ElevenLabs: eleven_turbo_v2_5;"
        " Cartesia: sonic-3)",
    )
    speak_p.add_argument(
        "--rate", type=float, default=1.0, help="speaking rate 0.5..1.5 (ElevenLabs 0.7..1.2)"
    )
    speak_p.add_argument("--sample-rate", type=int, default=24000, metavar="HZ")
    speak_p.add_argument(
        "-j", "--jobs", type=int, default=4,
        help="sentences at once (4; Cartesia: at most the plan's concurrency)",
    )  # fmt: skip
    speak_p.add_argument(
        "--http", action="store_true", help="one HTTP request per sentence (not a WebSocket)"
    )
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
    serve_p.add_argument(
        "--el-max-contexts", type=int, default=5, metavar="N",
        help="ElevenLabs contexts per socket (5, as ElevenLabs; 0: no limit)",
    )  # fmt: skip
    serve_p.add_argument(
        "--el-limit-action", choices=("close", "context-error"), default="close",
        help="over the ElevenLabs limit: close the socket with 1008 (as ElevenLabs) or fail "
        "only the new context",
    )  # fmt: skip

    voices_p = sub.add_parser("voices", help="list the voices")
    voices_p.add_argument(
        "--provider", choices=("inworld", "elevenlabs", "cartesia"), default="inworld",
        help="whose voices: Inworld's (default), ElevenLabs' (GET /v1/voices) or Cartesia's",
    )  # fmt: skip
    voices_p.add_argument("--language", help="only voices of this language (en, fr ...)")
    voices_p.add_argument("--json", action="store_true")
    service(voices_p)

    top_p = sub.add_parser(
        "top", help="live view of a running pool (its metrics_port endpoint)"
    )
    top_p.add_argument(
        "target", help="the endpoint: PORT (on 127.0.0.1), HOST:PORT or http://... URL"
    )
    top_p.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="redraw period (1 s)"
    )
    top_p.add_argument("--once", action="store_true", help="print one frame and exit")
    return parser


# ------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """The ``trio-tts`` console script. Returns the exit status.

    Ctrl-C (SIGINT) cancels the command as a whole (:mod:`trio_tts.cli.interrupt`): one line
    ``trio-tts: error: interrupted``, status 130, and ``speak``'s output file either complete
    or absent. Called as the program (``argv`` is ``None``), SIGINT is ignored once the
    outcome is known (a Ctrl-C while the process exits changes nothing); given ``argv``, the
    previous SIGINT handler is restored on return.
    """
    interrupts = Interrupts(restore=argv is not None)
    debug = False
    try:
        with interrupts:
            parser = _parser()
            args = parser.parse_args(argv)
            debug = args.debug
            if args.command == "speak" and (args.text is None) == (args.file is None):
                parser.error("speak: give the text or -f FILE (exactly one)")
            if args.command == "top" and not args.interval > 0:
                parser.error("top: --interval must be a positive number of seconds")
            if args.command == "serve" and args.el_max_contexts < 0:
                parser.error("serve: --el-max-contexts must be 0 (no limit) or more")
            commands = {
                "speak": speak_command,
                "serve": serve_command,
                "voices": voices_command,
                "top": top_command,
            }
            if args.command == "speak":
                args.text_value = read_text(args)  # Ctrl-C while reading stdin: interrupted
            with interrupts.deferred():
                status: int = trio.run(
                    run_interruptibly, commands[args.command], args, interrupts
                )
        if interrupts.seen:
            raise KeyboardInterrupt
    except BaseException as exc:
        interrupted = interrupts.seen or isinstance(exc, KeyboardInterrupt)
        if isinstance(exc, SystemExit) or (debug and not interrupted):
            raise
        code, message = (130, "interrupted") if interrupted else explain_error(exc)
        if message:
            print(f"trio-tts: error: {message}", file=sys.stderr)
        return code
    return status


if __name__ == "__main__":
    sys.exit(main())
