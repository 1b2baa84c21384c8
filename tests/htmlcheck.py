"""Test helper: external resources an HTML page would fetch (so a test can insist on none)."""

from __future__ import annotations

from html.parser import HTMLParser


class _Fetches(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in {"src", "href"} and tag in {"script", "link", "img", "iframe"}:
                self.found.append(f"<{tag} {name}={value}>")


def external_fetches(page: str) -> list[str]:
    """Every script/link/img/iframe URL in ``page`` (script bodies are not parsed as HTML)."""
    parser = _Fetches()
    parser.feed(page)
    return parser.found
