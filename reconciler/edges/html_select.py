"""What `qrm tests run` reads in a response with an HTML parser (the lxml edge of the test runner): the
texts an XPath or a CSS selector picks. The requests go through reconciler.edges.http_client
(aiohttp), flashes are read by reconciler.core.flash, and the case logic is reconciler.flows.tests_http.
"""

from __future__ import annotations

from typing import Any


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
