"""Abstract commands a context sends through its connection actor.

The actor's sender task encodes them with the connection's own codec, so a context moved to
another connection can replay the same commands there.
"""

from __future__ import annotations

import attrs

from .options import Options

__all__ = ["Cancel", "Close", "Command", "Create", "Flush", "SendText"]


@attrs.frozen
class Create:
    #: The provider's options object (``VoiceOptions``, ``RimeOptions`` ...).
    options: Options


@attrs.frozen
class SendText:
    text: str
    flush: bool = False


@attrs.frozen
class Flush:
    pass


@attrs.frozen
class Close:
    """No more text: finish the audio, then confirm with ``contextClosed``."""


@attrs.frozen
class Cancel:
    """Stop the utterance now; the slot stays taken until the server confirms."""


Command = Create | SendText | Flush | Close | Cancel
