"""Caption cleaning exactly as OpenAI CLIP does it, with a fast path for plain ASCII.

CLIP's text pipeline repairs mojibake with ``ftfy``, unescapes HTML entities twice, collapses
whitespace and lowercases. ``ftfy.fix_text`` alone costs tens of microseconds per caption,
more than all the rest of tokenization, yet it cannot change text that is printable ASCII
(no mojibake, no ligatures, no wide or curly characters, no control characters) and HTML
unescaping cannot change text without ``&``. For such text the full pipeline reduces to
whitespace collapse and lowercasing, which is what :func:`clean_text` does; the test suite
checks this equivalence on random strings.
"""

from __future__ import annotations

import html
import re

import ftfy

# Printable ASCII except '&' (0x26), plus the whitespace controls that ftfy keeps (\t, \n, \f)
# or turns into a newline (\r). Every other control character is deleted by ftfy, so text
# holding one needs the full pipeline.
_PLAIN_ASCII = re.compile(r"[\t\n\r\x0c -%'-~]*")


def needs_full_cleaning(text: str) -> bool:
    """Whether ``text`` may be changed by ftfy or HTML unescaping (so the fast path is unsafe)."""
    return _PLAIN_ASCII.fullmatch(text) is None


def full_clean_text(text: str) -> str:
    """CLIP's reference cleaning: ftfy, HTML unescape twice, whitespace collapse, lowercase.

    Whitespace is what ``str.split`` splits on. OpenAI's original used the regex ``\\s+``;
    the two differ only on U+001C..U+001F, which ftfy deletes and ``html.unescape`` never
    produces, so both give the same text.
    """
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def clean_text(text: str) -> str:
    """Clean ``text`` as CLIP does, skipping ftfy and HTML unescaping when they cannot apply."""
    if needs_full_cleaning(text):
        return full_clean_text(text)
    return " ".join(text.split()).lower()
