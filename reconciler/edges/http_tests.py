"""What `qrm tests run` reads in a response (the HTML edge of the test runner, lxml): the texts an XPath or
a CSS selector picks, and the flash of a page or of a `session` cookie. The requests themselves go through
reconciler.edges.http_client (aiohttp); the case logic is reconciler.flows.tests_http.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

# --- flash messages and selectors ------------------------------------------------------------------

def _flash_from_page(body: str) -> str | None:
    """Text of the elements whose class names a flash (`<div class="flash flash-error">`)."""
    if "flash" not in body:
        return None
    import lxml.html

    try:
        root = lxml.html.document_fromstring(body)
    except (ValueError, TypeError, lxml.etree.ParserError):
        return None
    found: Any = root.xpath("//*[contains(concat(' ', normalize-space(@class), ' '), ' flash ') or @role='alert']")
    texts = [" ".join(e.text_content().split()) for e in found]
    texts = [t for t in texts if t]
    return "\n".join(texts) or None


def _flash_from_cookie(value: str | None) -> str | None:
    """The flash in a `session` cookie of the form base64url(JSON).signature (unsigned JSON also read)."""
    if not value:
        return None
    payload = value.rsplit(".", 1)[0] if "." in value else value
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(data, dict):
        return None
    flashes = data.get("flashes", data.get("flash"))
    if isinstance(flashes, dict):
        flashes = [flashes]
    if not isinstance(flashes, list):
        return None
    texts = [str(f.get("message", "")) if isinstance(f, dict) else str(f) for f in flashes]
    return "\n".join(t for t in texts if t) or None


def select(kind: str, path: str, body: str) -> list[str]:
    """The texts (or attribute values) that an XPath or a CSS selector picks in an HTML body."""
    import lxml.etree
    import lxml.html

    try:
        root = lxml.html.document_fromstring(body or "<html></html>")
    except (ValueError, lxml.etree.ParserError) as exc:
        raise ValueError(f"the body is not HTML: {exc}") from None
    if kind == "css":
        try:
            from lxml.cssselect import CSSSelector
        except ImportError:
            raise ValueError("css assertions need the cssselect package, which is not installed") from None
        try:
            found: Any = CSSSelector(path)(root)
        except Exception as exc:  # cssselect's SelectorError and friends
            raise ValueError(f"invalid CSS selector: {exc}") from None
    else:
        try:
            found = root.xpath(path)
        except lxml.etree.XPathError as exc:
            raise ValueError(f"invalid XPath: {exc}") from None
    if not isinstance(found, list):
        return [str(found)]
    return [" ".join(x.text_content().split()) if isinstance(x, lxml.html.HtmlElement) else str(x) for x in found]
