"""Text from the service made safe for a terminal: its control characters shown, never obeyed.

A status field or an error body holding `\\x1b]0;title\\x07` or `\\x1b[2J` would otherwise set the
window title or clear the screen of whoever runs the command.
"""

from __future__ import annotations

__all__ = ["printable", "json_for_terminal"]

# C0, DEL and C1 (0x9b is a one-byte CSI on some terminals).
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
_SHOWN = {code: f"\\x{code:02x}" for code in _CONTROLS}
# json.dumps escapes C0 already; DEL and C1 as \u escapes keep the JSON value the same.
_JSON_ESCAPED = {code: f"\\u{code:04x}" for code in range(0x7F, 0xA0)}


def printable(text: object) -> str:
    """`text` on one line, each control character shown as `\\xNN`."""
    return str(text).translate(_SHOWN)


def json_for_terminal(text: str) -> str:
    """JSON text (from `json.dumps`) with DEL and C1 escaped too: the same value, inert on a terminal."""
    return text.translate(_JSON_ESCAPED)
