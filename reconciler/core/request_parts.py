"""What a test case may put in the HTTP request it sends (RFC 9110, RFC 3986): the rules manifests are checked
against when they are loaded, so that a case never sends a header it did not mean (a CR/LF in a value would end
the header and start another: header injection) and never fails at run time on a part no client can send.

- A header name is a token: letters, digits and !#$%&'*+-.^_`|~.
- A header value is visible ASCII, spaces and tabs: no CR, LF, NUL or other control character, and no non-ASCII
  character (RFC 9110 leaves their bytes to each client and server; percent-encode such text yourself).
- A path holds no control character (CR/LF included). Other characters a URL cannot hold (spaces, non-ASCII
  text) are percent-encoded as UTF-8 when the request is sent (RFC 3986, as browsers do): `/café` is sent as
  `/caf%C3%A9`.
- A multipart field name, an upload's filename and its content type hold no control character, and the content
  type is `type/subtype` with optional `; parameters`. (The field names of a urlencoded form are percent-encoded,
  so any text is fine there.)

`qrm tests generate` writes parts from .q files it does not control: it percent-encodes their control characters
(escape_controls) instead, as a browser would.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MEDIA_TYPE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+(\s*;.*)?")


def control_character(text: str, *, allow_tab: bool = False) -> str | None:
    """The first control character of `text` (C0, DEL, C1), as a name a message can show, or None."""
    for char in text:
        if unicodedata.category(char) == "Cc" and not (allow_tab and char == "\t"):
            return {"\r": "CR", "\n": "LF", "\0": "NUL", "\t": "TAB"}.get(char, f"U+{ord(char):04X}")
    return None


def escape_controls(text: str) -> str:
    """`text` with each control character percent-encoded, as a browser sends a URL or a multipart field name
    holding one (a path made from a file name with a newline is sent with %0A): for parts qrm writes itself."""
    return "".join(quote(char, safe="") if unicodedata.category(char) == "Cc" else char for char in text)


def header_problem(name: str, value: str) -> str | None:
    """Why `name: value` cannot be sent as a request header, or None."""
    if not _TOKEN.fullmatch(name):
        return (f"header name {name!r} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~; no spaces, colons "
                "or control characters)")
    found = control_character(value, allow_tab=True)
    if found in ("CR", "LF"):
        return (f"the value of header {name} holds a line break ({found}): it would end the header and start "
                "another (header injection)")
    if found is not None:
        return f"the value of header {name} holds a control character ({found})"
    if not value.isascii():
        return (f"the value of header {name} holds non-ASCII text: HTTP header values are ASCII (RFC 9110); "
                "percent-encode the text")
    return None


def path_problem(path: str) -> str | None:
    """Why `path` cannot be a request path, or None (non-ASCII text and spaces are percent-encoded when sent)."""
    found = control_character(path)
    if found is not None:
        return f"the path holds a control character ({found}); a URL cannot carry one"
    return None


def media_type_problem(content_type: str) -> str | None:
    """Why `content_type` cannot be an upload's Content-Type, or None."""
    found = control_character(content_type)
    if found is not None:
        return f"the content type holds a control character ({found})"
    if not content_type.isascii() or not _MEDIA_TYPE.fullmatch(content_type):
        return f"expected a media type such as text/plain or image/png; charset=..., not {content_type!r}"
    return None


def text_problem(what: str, text: str) -> str | None:
    """Why `text` (a multipart field name, a filename: part of a header of the body) cannot be sent, or None."""
    found = control_character(text)
    if found is not None:
        return f"{what} {text!r} holds a control character ({found})"
    return None
