"""A pipecat pipeline whose text-to-speech is Inworld on the trio engine, spoken into a WAV.

The TTS is ``bridges.pipecat.InworldTTSService``, pipecat's own service with one change: its
utterances are contexts drawn from the process's shared pool, so every pipeline of the
process (one per call) shares at most ``max_connections`` WebSockets. The pipeline here is
an LLM reply streamed as tokens, a line spoken on its own, and a sink that writes the audio
to a WAV file.

No keys needed: without ``--url`` the script starts the local speech server (real eSpeak NG
speech) in a thread and speaks through it::

    pip install 'trio-tts[pipecat,server]'
    python examples/pipecat_bot.py --out bot.wav

Against Inworld itself::

    INWORLD_API_KEY=... python examples/pipecat_bot.py \\
        --url wss://api.inworld.ai/tts/v1/voice:streamBidirectional --out bot.wav
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import wave
from collections.abc import Iterator

import trio
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from bridges.pipecat import InworldTTSService
from trio_tts.server import LocalServer, ServerConfig, open_server

RATE = 24000
REPLY = "Hello! I am a pipecat bot. My voice comes from a shared pool of connections."


class WavSink(FrameProcessor):
    """Writes the audio that reaches it to a 16-bit mono WAV file (closed at the end)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._wav = wave.open(path, "wb")  # noqa: SIM115  (closed on EndFrame)
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(RATE)
        self.seconds = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self._wav.writeframes(frame.audio)
            self.seconds += len(frame.audio) / 2 / frame.sample_rate
        elif isinstance(frame, EndFrame):
            self._wav.close()
        await self.push_frame(frame, direction)


@contextlib.contextmanager
def local_server() -> Iterator[LocalServer]:
    """The local speech server, in its own thread and trio run, for the block."""
    ready = threading.Event()
    found: list[tuple[LocalServer, trio.lowlevel.TrioToken, trio.Event]] = []

    async def serve() -> None:
        async with open_server(ServerConfig()) as server:
            stop = trio.Event()
            found.append((server, trio.lowlevel.current_trio_token(), stop))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the local speech server did not start")
    server, token, stop = found[0]
    try:
        yield server
    finally:
        token.run_sync_soon(stop.set)
        thread.join(10)


async def speak(url: str, api_key: str, out: str) -> float:
    """Run the pipeline once; returns the seconds of audio written to ``out``."""
    tts = InworldTTSService(
        api_key=api_key,
        url=url,
        sample_rate=RATE,
        settings=InworldTTSService.Settings(voice="Ashley"),
    )
    sink = WavSink(out)
    worker = PipelineWorker(
        Pipeline([tts, sink]),
        params=PipelineParams(audio_out_sample_rate=RATE),
        cancel_on_idle_timeout=False,
    )

    @worker.event_handler("on_pipeline_started")
    async def started(worker: PipelineWorker, frame: Frame) -> None:
        tokens = [REPLY[i : i + 7] for i in range(0, len(REPLY), 7)]  # as an LLM streams
        await worker.queue_frames(
            [
                LLMFullResponseStartFrame(),
                *map(LLMTextFrame, tokens),
                LLMFullResponseEndFrame(),
                TTSSpeakFrame("Goodbye."),
                EndFrame(),
            ]
        )

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    return sink.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="pipecat_bot.wav", help="the WAV file to write")
    parser.add_argument("--url", help="Inworld's WebSocket URL (default: a local server)")
    args = parser.parse_args()
    logger.remove()  # pipecat logs every frame at DEBUG
    logger.add(sys.stderr, level="INFO")
    key = os.environ.get("INWORLD_API_KEY") or "local"
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(local_server()).ws_url
        seconds = asyncio.run(speak(url, key, args.out))
    print(f"wrote {seconds:.1f} s of speech to {args.out}")


if __name__ == "__main__":
    main()
