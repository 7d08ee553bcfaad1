"""How messages travel over a data channel or a websocket: a pure encode/decode step, no I/O.

Strings go as text, as they are; bytes go as binary; anything else (dicts, lists, numbers, booleans, None)
goes as JSON text. On the way in, text that looks like a JSON object or array (``{...}`` / ``[...]``) is
parsed; other text stays a string, and binary stays bytes. The browser client (``rtcbot.js``) follows the
same rules, so both ends see what the other sent::

    encode_message({"left": 100})   # '{"left": 100}'
    decode_message('{"left": 100}') # {'left': 100}
    decode_message("hello")         # 'hello'
"""

from __future__ import annotations

import json
from typing import Any, Union

from ..errors import EncodeError

__all__ = ["decode_message", "encode_message"]


def encode_message(message: Any) -> Union[str, bytes]:
    """What to send for ``message``: str and bytes unchanged, anything else as JSON text.

    Raises :class:`~rtcbot.errors.EncodeError` (a ValueError) for what JSON cannot hold, naming the type."""
    if isinstance(message, (str, bytes)):
        return message
    if isinstance(message, (bytearray, memoryview)):
        return bytes(message)
    try:
        return json.dumps(message)
    except (TypeError, ValueError) as e:
        raise EncodeError(
            f"a message sent to the browser must be a str, bytes or JSON-serialisable value "
            f"(dict, list, number, bool, None); {type(message).__name__} is not ({e})"
        ) from e


def decode_message(data: Union[str, bytes]) -> Any:
    """The message ``data`` (text or binary as received) stands for: parsed JSON for an object or array,
    otherwise the string or bytes themselves."""
    if isinstance(data, str):
        start = data.lstrip()[:1]
        if start in ("{", "["):
            try:
                return json.loads(data)
            except ValueError:
                return data
    return data
