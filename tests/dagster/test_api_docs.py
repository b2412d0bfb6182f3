"""/docs (Swagger UI) and /redoc work without internet: each page and every script, style and icon it loads come
from the API itself, and no page names another host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from video_pipelines.api.app import create_app
from video_pipelines.api.settings import ApiSettings


class _Assets(HTMLParser):
    """The URLs a page loads: scripts, styles, icons (`src` and `href` of script and link tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "link"}:
            self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


@pytest.fixture
def client(dagster_home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings())) as opened:
        yield opened


@pytest.mark.parametrize(("page", "script"), [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
def test_docs_pages_load_everything_from_the_api(client: TestClient, page: str, script: str) -> None:
    html = client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert not re.search(r"(https?:)?//[\w.-]+", html.text), "a docs page names another host"
    found = _Assets()
    found.feed(html.text)
    assert len(found.urls) >= 2  # the page's script, and its icon (and Swagger UI's stylesheet)
    for url in found.urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    bundle = next(url for url in found.urls if url.endswith(".js"))
    assert script in client.get(bundle).text
    assert client.get("/openapi.json").json()["info"]["title"] == "video-pipelines"
