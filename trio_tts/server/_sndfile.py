"""libsndfile through ``ctypes``: write one compressed stream into memory (public C API only).

Why not ``soundfile.SoundFile``: two settings a streaming encoder needs have no public
``soundfile`` API — :data:`SFC_SET_OGG_PAGE_LATENCY_MS` (an Ogg page every 40 ms instead of
libsndfile's default of about a second, so that a flush pads ~50 ms of silence rather than a
second) and :data:`SFC_SET_ORIGINAL_SAMPLERATE` (the rate an Opus stream records). soundfile
reaches ``sf_command`` only through its private ``_snd``/``_ffi`` objects and the private
handle ``SoundFile._file``. So this module loads the same shared library — the one the
``soundfile`` wheel ships (found through :func:`importlib.metadata.files`), else the
system's ``libsndfile`` — and calls libsndfile's documented functions itself:
``sf_open_virtual``, ``sf_command``, ``sf_writef_short``, ``sf_write_sync``, ``sf_close``.
It does exactly what ``SoundFile(sink, mode="w", ...)`` did (clipping on, a flush before the
close), so the bytes are the same; measured, the cost is the same too (the ctypes calls are
microseconds against milliseconds of encoding per chunk).

Example::

    stream = SndfileStream(FORMAT_FLAC_16, samplerate=24000)
    stream.command_double(SFC_SET_COMPRESSION_LEVEL, 0.0)
    stream.write(samples)          # int16 numpy array
    flac = stream.take() + stream.close()
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.metadata
import platform
from typing import Any

import numpy as np

__all__ = [
    "FORMAT_FLAC_16",
    "FORMAT_MP3",
    "FORMAT_OGG_OPUS",
    "SFC_SET_BITRATE_MODE",
    "SFC_SET_COMPRESSION_LEVEL",
    "SFC_SET_OGG_PAGE_LATENCY_MS",
    "SFC_SET_ORIGINAL_SAMPLERATE",
    "SndfileStream",
    "library",
]

# From <sndfile.h>: container | codec.
FORMAT_OGG_OPUS = 0x200000 | 0x0064
FORMAT_MP3 = 0x230000 | 0x0082
FORMAT_FLAC_16 = 0x170000 | 0x0002
SFC_SET_COMPRESSION_LEVEL = 0x1301
SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302
SFC_SET_BITRATE_MODE = 0x1305
SFC_SET_ORIGINAL_SAMPLERATE = 0x1500
_SFC_SET_CLIPPING = 0x10C0
_SFM_WRITE = 0x20
_SF_TRUE = 1

_Count = ctypes.c_int64  # sf_count_t
_GetLength = ctypes.CFUNCTYPE(_Count, ctypes.c_void_p)
_Seek = ctypes.CFUNCTYPE(_Count, _Count, ctypes.c_int, ctypes.c_void_p)
_Read = ctypes.CFUNCTYPE(_Count, ctypes.c_void_p, _Count, ctypes.c_void_p)
_Write = ctypes.CFUNCTYPE(_Count, ctypes.c_void_p, _Count, ctypes.c_void_p)
_Tell = ctypes.CFUNCTYPE(_Count, ctypes.c_void_p)


class _Info(ctypes.Structure):  # SF_INFO
    _fields_ = [
        ("frames", _Count),
        ("samplerate", ctypes.c_int),
        ("channels", ctypes.c_int),
        ("format", ctypes.c_int),
        ("sections", ctypes.c_int),
        ("seekable", ctypes.c_int),
    ]


class _VirtualIO(ctypes.Structure):  # SF_VIRTUAL_IO
    _fields_ = [
        ("get_filelen", _GetLength),
        ("seek", _Seek),
        ("read", _Read),
        ("write", _Write),
        ("tell", _Tell),
    ]


def _library_path() -> str | None:
    try:
        files = importlib.metadata.files("soundfile") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    found = [f for f in files if f.name.startswith("libsndfile")]
    found.sort(key=lambda f: platform.machine().lower() not in f.name.lower())
    if found:
        return str(found[0].locate())
    return ctypes.util.find_library("sndfile")


@functools.cache
def library() -> Any:
    """The loaded libsndfile, its functions typed.

    Raises:
        OSError: no libsndfile (install the ``soundfile`` wheel: ``trio-tts[server]``).
    """
    path = _library_path()
    if path is None:
        raise OSError("libsndfile not found (install soundfile: pip install -e '.[server]')")
    lib = ctypes.CDLL(path)
    lib.sf_open_virtual.restype = ctypes.c_void_p
    lib.sf_open_virtual.argtypes = [
        ctypes.POINTER(_VirtualIO), ctypes.c_int, ctypes.POINTER(_Info), ctypes.c_void_p
    ]  # fmt: skip
    lib.sf_command.restype = ctypes.c_int
    lib.sf_command.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    lib.sf_writef_short.restype = _Count
    lib.sf_writef_short.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_short), _Count]
    lib.sf_write_sync.restype = None
    lib.sf_write_sync.argtypes = [ctypes.c_void_p]
    lib.sf_close.restype = ctypes.c_int
    lib.sf_close.argtypes = [ctypes.c_void_p]
    lib.sf_strerror.restype = ctypes.c_char_p
    lib.sf_strerror.argtypes = [ctypes.c_void_p]
    return lib


class _Sink:
    """The stream's "file": write-only, and every byte is handed out once (:meth:`take`).

    Writes before what was already taken (header rewrites at close) are dropped: those bytes
    are on the wire already."""

    def __init__(self) -> None:
        self._base = 0  # stream offset of _pending[0]
        self._pending = bytearray()
        self._pos = 0
        self._end = 0

    def write(self, data: bytes) -> int:
        n = len(data)
        start = self._pos - self._base
        if start < 0:
            data, start = data[-start:], 0
        self._pending[start : start + len(data)] = data
        self._pos += n
        self._end = max(self._end, self._pos)
        return n

    def seek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self._pos, 2: self._end}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def length(self) -> int:
        return self._end

    def take(self) -> bytes:
        out = bytes(self._pending)
        self._base += len(out)
        self._pending.clear()
        return out


class SndfileStream:
    """One mono stream libsndfile writes into memory; :meth:`take` hands out its new bytes.

    Raises:
        OSError: libsndfile is missing or refuses the format and rate.
    """

    def __init__(self, format: int, samplerate: int) -> None:
        lib = library()
        sink = self._sink = _Sink()
        # The callbacks must live as long as the handle: they are attributes of this object.
        self._io = _VirtualIO(
            get_filelen=_GetLength(lambda _user: sink.length()),
            seek=_Seek(lambda offset, whence, _user: sink.seek(offset, whence)),
            read=_Read(lambda _ptr, _count, _user: 0),
            write=_Write(lambda ptr, count, _user: sink.write(ctypes.string_at(ptr, count))),
            tell=_Tell(lambda _user: sink.tell()),
        )
        info = _Info(samplerate=samplerate, channels=1, format=format)
        handle = lib.sf_open_virtual(ctypes.byref(self._io), _SFM_WRITE, ctypes.byref(info), None)
        if not handle:
            raise OSError(f"libsndfile: {lib.sf_strerror(None).decode(errors='replace')}")
        self._lib, self._handle = lib, handle
        lib.sf_command(handle, _SFC_SET_CLIPPING, None, _SF_TRUE)  # as soundfile does
        self.closed = False

    def command_double(self, command: int, value: float) -> int:
        """``sf_command`` with a ``double`` argument; libsndfile's status (0: done)."""
        return self._command(command, ctypes.c_double(value))

    def command_int(self, command: int, value: int) -> int:
        """``sf_command`` with an ``int`` argument; libsndfile's status (0: done)."""
        return self._command(command, ctypes.c_int(value))

    def _command(self, command: int, data: ctypes.c_double | ctypes.c_int) -> int:
        size = ctypes.sizeof(data)
        return int(self._lib.sf_command(self._handle, command, ctypes.byref(data), size))

    def write(self, samples: np.ndarray[Any, Any]) -> None:
        """Encode int16 samples (a 1-D array).

        Raises:
            OSError: libsndfile wrote fewer samples than given.
        """
        samples = np.ascontiguousarray(samples, dtype=np.int16)
        pointer = samples.ctypes.data_as(ctypes.POINTER(ctypes.c_short))
        written = self._lib.sf_writef_short(self._handle, pointer, len(samples))
        if written != len(samples):
            raise OSError(f"libsndfile: {self._lib.sf_strerror(self._handle).decode()}")

    def take(self) -> bytes:
        """The bytes written since the last call."""
        return self._sink.take()

    def close(self) -> bytes:
        """Finish the stream; return its last bytes. Idempotent."""
        if self.closed:
            return b""
        self.closed = True
        self._lib.sf_write_sync(self._handle)
        status = self._lib.sf_close(self._handle)
        if status:
            raise OSError(f"libsndfile: close failed ({status})")
        return self._sink.take()

    def __del__(self) -> None:  # an encoder dropped without close (an error path)
        if not getattr(self, "closed", True):
            self.closed = True
            self._lib.sf_close(self._handle)
