"""``make demo``: speak a short paragraph with the embedded local server into ``out/demo.wav``.

Runs the same code as ``trio-tts speak`` (:func:`trio_tts.cli.speak`): a local speech server
(eSpeak NG) starts in this process, the paragraph is cut into sentences, the sentences are
synthesised through several pooled contexts at once and written in order into one WAV file.
No API key and no network are needed; ``$INWORLD_API_KEY`` is ignored.

Usage: ``python -m trio_tts.cli.demo [-o out/demo.wav] [--voice Ashley]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from .common import explain_error
from .main import speak

__all__ = ["PARAGRAPH", "main"]

PARAGRAPH = (
    "Hello, and welcome to trio T T S. "
    "This paragraph was cut into sentences, and every sentence was spoken by its own context. "
    "The contexts ran at the same time, sharing one WebSocket to a local speech server. "
    "The audio was then stitched back together, in order, into a single file. "
    "Thanks for listening!"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_tts.cli.demo", description=__doc__)
    parser.add_argument("-o", "--output", default="out/demo.wav")
    parser.add_argument("--voice", default="Ashley")
    args = parser.parse_args(argv)
    from ..providers.inworld.options import VoiceOptions

    try:
        result = trio.run(
            lambda: speak(
                PARAGRAPH,
                args.output,
                options=VoiceOptions(voice=args.voice, sample_rate=24000),
                jobs=4,
                progress=sys.stderr,
            )
        )
    except Exception as exc:
        code, message = explain_error(exc)
        print(f"demo: error: {message}", file=sys.stderr)
        return code
    print(f"wrote {result.path}")
    print(f"  duration            {result.duration:.2f} s ({result.sample_rate} Hz, mono)")
    print(f"  sentences           {result.sentences} ({result.peak_concurrency} at once)")
    print(f"  time to first audio {result.time_to_first_audio * 1000:.0f} ms")
    print(
        f"  real-time factor    {result.real_time_factor:.4f}"
        f" ({1 / result.real_time_factor:.0f}x faster than real time)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
