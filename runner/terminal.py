"""Text for terminals: what comes from leads, templates or providers is never printed raw.

A name holding `ESC ] 0 ; … BEL` retitles the terminal, `ESC [ 2 J` clears it, a bare carriage
return hides the start of a line and a right-to-left override reverses what follows. Imports refuse
such characters (`runner.project.leadsfile`), but a database may hold older rows and templates or providers
may produce them, so everything seqrun prints from those sources goes through `printable` (text)
or `json_printable` (JSON documents), which write them as visible escapes like `\\x1b` or `\\u202e`.
"""
from __future__ import annotations

import re

# C0 controls but tab (and newline, kept separately when text is multi-line), DEL, C1 controls, and
# the bidirectional overrides and isolates that reorder what a terminal shows.
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEP_NEWLINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# json.dumps escapes C0 controls itself; these it leaves as they are.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, multiline: bool = False) -> str:
    """`text` with control characters written as escapes; line breaks kept when `multiline`."""
    pattern = _UNSAFE_KEEP_NEWLINES if multiline else _UNSAFE
    return pattern.sub(_escape, text)


def json_printable(document: str) -> str:
    """A JSON document (from json.dumps) with the characters it left raw written as \\u escapes.

    Those characters can only occur inside JSON strings, where `\\uXXXX` means the same thing, so
    the document still loads to the same data.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
