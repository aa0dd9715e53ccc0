"""The dashboard: two pages and their scripts, shipped in `query/api/pages/` and
`query/api/static/` (no CDN: the machines this runs on may have no internet). The pages hold no
data; their scripts read the activity and analytics APIs with the token the user enters, so the
dashboard can show nothing that the API would not.

Every page is `pages/page.html` (head, header, navigation) around the page's own `<main>` from
`pages/<name>.html`, put together once at start-up, so the frame is written once."""

from __future__ import annotations

from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIRECTORY = Path(__file__).parent / "static"
PAGES_DIRECTORY = Path(__file__).parent / "pages"
# (route, title, name) in the navigation's order; `name` picks pages/<name>.html and static/<name>.js.
PAGES = (("/dashboard", "Customer timeline", "timeline"), ("/dashboard/overview", "Tenant overview", "overview"))
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


def render_page(name: str, pages: Path = PAGES_DIRECTORY) -> bytes:
    """The whole HTML of page `name`: the shared frame with its title, script, navigation and main."""
    nav = "".join(
        f'<a href="{route}" aria-current="page">{title}</a>' if page == name else f'<a href="{route}">{title}</a>'
        for route, title, page in PAGES
    )
    title = next(title for _, title, page in PAGES if page == name)
    frame = Template((pages / "page.html").read_text())
    return frame.substitute(title=title, name=name, nav=nav, main=(pages / f"{name}.html").read_text()).encode()


class Dashboard:
    def __init__(self, directory: Path = STATIC_DIRECTORY) -> None:
        self.directory = directory
        self.assets = StaticFiles(directory=directory)
        self._pages = {name: render_page(name) for _, _, name in PAGES}

    async def timeline(self, _request: Request) -> Response:
        return self._page("timeline")

    async def overview(self, _request: Request) -> Response:
        return self._page("overview")

    async def favicon(self, _request: Request) -> Response:
        # Browsers ask every origin for /favicon.ico; an SVG answers it (the pages link it too).
        return FileResponse(self.directory / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})

    def _page(self, name: str) -> Response:
        return Response(self._pages[name], media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)
