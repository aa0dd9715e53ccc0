"""The dashboard: two static pages and their scripts, shipped in `query/api/static/` (no CDN: the
machines this runs on may have no internet). The pages hold no data; their scripts read the
activity and analytics APIs with the token the user enters, so the dashboard can show nothing
that the API would not."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIRECTORY = Path(__file__).parent / "static"
# Scripts and styles from this server only, and no inline script: event data (customer names,
# metadata) is rendered by the scripts, and a payload that slipped into markup could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Dashboard:
    def __init__(self, directory: Path = STATIC_DIRECTORY) -> None:
        self.directory = directory
        self.assets = StaticFiles(directory=directory)

    async def timeline(self, _request: Request) -> Response:
        return self._page("timeline.html")

    async def overview(self, _request: Request) -> Response:
        return self._page("overview.html")

    async def favicon(self, _request: Request) -> Response:
        # Browsers ask every origin for /favicon.ico; an SVG answers it (the pages link it too).
        return FileResponse(self.directory / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})

    def _page(self, name: str) -> Response:
        return FileResponse(self.directory / name, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
