"""What the transport still delivers when the connection dies: the messages before an
oversize one (1009).

Real TCP servers on 127.0.0.1 speak through ``websockets``' sans-io ``ServerProtocol``.
"""

from __future__ import annotations

import contextlib
import inspect

import pytest
import trio
from test_transport import SECRET, flush, serve_raw
from websockets.frames import Frame
from websockets.server import ServerProtocol

from trio_tts._core.errors import ConnectionLost
from trio_tts._core.transport import DEFAULT_MAX_MESSAGE_SIZE, connect
from trio_tts.testing import MemoryServer

# ------------------------------------------------------------------- message size limit


async def test_oversize_message_after_a_small_one_closes_with_1009(
    nursery: trio.Nursery,
) -> None:
    close_codes: list[int | None] = []
    got_close = trio.Event()

    async def script(stream: trio.SocketStream, proto: ServerProtocol) -> None:
        proto.send_text(b"small")
        proto.send_binary(b"\x00" * (2 * 2**20))
        async with trio.open_nursery() as inner:

            async def write() -> None:
                # May block for good: the client stops reading after the big frame's header.
                with contextlib.suppress(trio.BrokenResourceError):
                    await flush(stream, proto)

            inner.start_soon(write)
            while proto.close_rcvd is None and (data := await stream.receive_some(65536)):
                proto.receive_data(data)
                for event in proto.events_received():
                    assert isinstance(event, Frame)
            close_codes.append(proto.close_rcvd.code if proto.close_rcvd else None)
            got_close.set()
            inner.cancel_scope.cancel()

    with trio.fail_after(5):
        url = await serve_raw(nursery, script)
        ws = await connect(url, [])  # the default limit: 1 MiB
        assert await ws.receive() == "small"
        with pytest.raises(
            ConnectionLost,
            match=r"^a message from 127\.0\.0\.1:\d+ is larger than max_message_size "
            r"\(1048576 bytes\), so the connection was closed with code 1009 "
            r"\(message too big\); max_message_size is a setting$",
        ) as info:
            await ws.receive()
        assert info.value.code == 1009
        assert SECRET not in str(info.value)
        await got_close.wait()
        assert close_codes == [1009]
        with pytest.raises(ConnectionLost) as later:
            await ws.send("after")
        assert later.value is info.value
        await ws.aclose()


async def test_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 1_048_576
    params = inspect.signature(connect).parameters
    assert params["max_message_size"].default == DEFAULT_MAX_MESSAGE_SIZE


@pytest.mark.parametrize("factory", [connect, MemoryServer.connect])
def test_factory_contract_keywords(factory: object) -> None:
    """Both transport factories accept the keywords the pool passes."""
    args = ("ws://h/x", []) if factory is connect else (object(), "ws://h/x", [])
    inspect.signature(factory).bind(  # type: ignore[arg-type]
        *args, handshake_timeout=1.0, close_timeout=1.0, max_message_size=1000
    )
