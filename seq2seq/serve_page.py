"""``GET /``: one page to try a model in a browser, with the attention of a chosen line.

The page (``web/index.html``: HTML, CSS and JavaScript in one file, no CDN, no
build step) posts to the same ``/translate`` with ``"attention": true`` and
draws the weights of the line clicked as a grid of cells, one per (output
token, source token) pair, the weight in each cell's shade and tooltip. The
server's errors (413, 422, 503, ...) show as messages on the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).parent / "web" / "index.html"


def add_page(app: FastAPI) -> None:
    html = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html)
