"""HTTP statuses for the engine's errors, for the frameworks that classify errors by them
(LiveKit's ``APIStatusError``, pipecat's ``ErrorCategory``)."""

from __future__ import annotations

from typing import Final

import trio_tts

__all__ = ["GRPC_TO_HTTP", "http_status"]

#: google.rpc canonical codes (Inworld's status codes) → HTTP, as grpc-gateway maps them.
GRPC_TO_HTTP: Final = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip


def http_status(exc: trio_tts.TTSError) -> int | None:
    """The HTTP status ``exc`` stands for: a refusal's own status, a failed context's gRPC
    code mapped to HTTP (500 without a code); None for the rest (no answer, options ...)."""
    if isinstance(exc, trio_tts.HandshakeRejected | trio_tts.RequestRejected):
        return exc.status
    if isinstance(exc, trio_tts.ContextFailed):
        return GRPC_TO_HTTP.get(exc.code, 500) if exc.code is not None else 500
    return None
