"""``trio-tts top``: a live terminal view of a running pool, drawn from the JSON document its
metrics endpoint serves (``open_pool(..., metrics_port=9464)``; ``Pool.metrics_url``)::

    trio-tts top 9464                      # http://127.0.0.1:9464/, redrawn every second
    trio-tts top http://127.0.0.1:9464/ --interval 0.5
    trio-tts top 9464 --once               # one frame, no escape codes, then exit

Plain ANSI — move the cursor home, clear, print the frame — rather than ``rich`` or curses:
the frame is a dozen lines of text redrawn once a second, which needs two escape codes and
no new dependency, and the same :func:`render` output is what ``--once`` prints and the
tests read. Ctrl-C ends the view (status 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import httpx
import trio

from .._core.errors import TTSError, connect_failure

__all__ = ["endpoint_url", "fetch", "render", "top_command"]

_HOME_CLEAR = "\x1b[H\x1b[2J"
_BAR = 30


def endpoint_url(target: str) -> str:
    """The document's URL for ``PORT``, ``HOST:PORT`` or a full ``http://`` URL."""
    if target.isdigit():
        return f"http://127.0.0.1:{target}/"
    if target.startswith(("http://", "https://")):
        return target
    return f"http://{target}/"


async def fetch(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """The live view's document at ``url``.

    Raises:
        TTSError: the endpoint cannot be reached or did not answer a document.
    """
    try:
        response = await client.get(url)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    except httpx.HTTPStatusError as exc:
        raise TTSError(f"{url} answered HTTP {exc.response.status_code}") from None
    except (httpx.HTTPError, ValueError) as exc:
        why = connect_failure(exc) or type(exc).__name__
        raise TTSError(f"cannot read the pool's metrics endpoint at {url} ({why})") from None
    return document


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def render(doc: dict[str, Any], url: str) -> str:
    """One frame of the view (plain text, no escape codes)."""
    s = doc["statistics"]
    per_conn = s["contexts_per_connection"]
    # The pool's cap (ElevenLabs: the account's concurrency), else connections × contexts.
    slots = s.get("max_contexts") or s["max_connections"] * per_conn
    used = s["contexts_in_use"]
    filled = 0 if not slots or not used else max(1, round(_BAR * used / slots))
    ttfa = doc["ttfa"]
    contexts = doc.get("contexts", {})
    states = ", ".join(f"{k} {v}" for k, v in sorted(contexts.items())) or "none held"
    lines = [
        f"trio-tts top — {doc['provider']} pool ({'closed' if doc['closed'] else 'open'})"
        f" at {url}",
        "",
        f"connections {s['connections']:>4} / {s['max_connections']:<5}"
        f" open {s['connections_open']}  connecting {s['connections_connecting']}"
        f"  draining {s['connections_draining']}   (opened {s['connections_opened']},"
        f" failed {s['connections_failed']})",
        f"slots       {used:>4} / {slots:<5} [{'#' * filled}{'.' * (_BAR - filled)}]"
        f"  closing {s['contexts_closing']}",
        f"waiters     {s['waiting']:>4}",
        f"TTFA        p50 {_ms(ttfa['p50'])}  p99 {_ms(ttfa['p99'])}"
        f"  ({ttfa['count']} context(s) in the last {ttfa['window']:g} s)",
        f"contexts    opened {s['contexts_opened']}  moved {s['contexts_moved']}  ({states})",
        "",
        "  conn  state       slots  frames in / out",
    ]
    for c in doc["connections"]:
        lines.append(
            f"  #{c['id']:<4} {c['state']:<11} {c['contexts']:>2}/{per_conn:<3}"
            f" {c['frames_received']:>8} / {c['frames_sent']}"
        )
    if not doc["connections"]:
        lines.append("  (no connection)")
    return "\n".join(lines)


async def top_command(args: argparse.Namespace) -> int:
    url = endpoint_url(args.target)
    async with httpx.AsyncClient(timeout=5.0) as client:
        if args.once:
            print(render(await fetch(client, url), url), flush=True)
            return 0
        tty = sys.stdout.isatty()
        # Ctrl-C (or SIGTERM) ends the view: the ordinary way out of a live view, status 0.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            while True:
                try:
                    frame = render(await fetch(client, url), url)
                except TTSError as exc:
                    frame = f"trio-tts top: {exc}; retrying every {args.interval:g} s"
                sys.stdout.write((_HOME_CLEAR + frame) if tty else frame + "\n\n")
                sys.stdout.flush()
                with trio.move_on_after(args.interval):
                    async for _ in signals:
                        return 0
