"""A LiveKit voice agent whose text-to-speech is Inworld on the trio engine.

Every job runs in its own process (LiveKit's model); inside it, every ``bridges.livekit.TTS``
shares one pool of Inworld WebSocket connections, run by trio as a guest on the job's asyncio
loop (uvloop or the default one). Each utterance is a pooled *context*, so a new turn starts
without a new TLS handshake.

Run it (credentials as usual for LiveKit, plus Inworld's)::

    pip install -e '.[livekit,server]' livekit-plugins-deepgram livekit-plugins-openai \\
        livekit-plugins-silero
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    export INWORLD_API_KEY=... DEEPGRAM_API_KEY=... OPENAI_API_KEY=...
    python examples/livekit_agent.py dev

Without Inworld credentials, point it at the local speech server (real eSpeak NG speech)::

    trio-tts serve --port 8765 &
    INWORLD_WS_URL=ws://127.0.0.1:8765/ python examples/livekit_agent.py dev
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli

from bridges import livekit as trio_inworld

server = AgentServer()


def prewarm(proc: JobProcess) -> None:
    """Runs once per job process before its first job: load the VAD model."""
    from livekit.plugins import silero

    proc.userdata["vad"] = silero.VAD.load()


server.setup_fnc = prewarm


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You are a friendly voice assistant. Answer in one or two short sentences."
            )
        )


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    from livekit.plugins import deepgram, openai

    tts = trio_inworld.TTS(
        voice="Ashley",
        model="inworld-tts-1.5-max",
        timestamp_type="WORD",  # aligned transcripts: captions follow the audio word by word
        ws_url=os.environ.get("INWORLD_WS_URL", trio_inworld.DEFAULT_WS_URL),
        max_connections=4,  # this process's share of the account's 20 connections
    )
    tts.prewarm()  # open the pool and its first WebSocket while the room connects
    ctx.add_shutdown_callback(tts.aclose)  # the last TTS closes the shared pool

    session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=deepgram.STT(),
        llm=openai.LLM(model="gpt-4o-mini"),
        tts=tts,
        use_tts_aligned_transcript=True,
    )
    await session.start(agent=Assistant(), room=ctx.room)
    await session.generate_reply(instructions="Greet the user and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
