"""The aggregates dashboard at `/`: one self-contained page (inline CSS, SVG and script, no network beyond
this service) that reads the same JSON API as any client. Pick the family (submission date or build id),
channel, version, metric and filters; it draws the histogram's distribution over the chosen dates (bucket
shares, mean, percentiles) and its evolution date by date; a keyed histogram is shown one label at a time.

The page discovers what exists from the API (`/aggregates_by/<family>/channels/`, `.../dates/`,
`/filters/`): every dimension `/filters/` lists becomes a filter, with the values it lists, so the page
follows the API rather than repeating its parameters.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse

PAGE = Path(__file__).with_name("dashboard.html")
# The page runs only its own inline script and styles, talks only to this service and can't be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@cache
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def dashboard(request: Request) -> HTMLResponse:
    """GET /: the dashboard page (it takes no query parameters; the page keeps its choices in the URL hash)."""
    return HTMLResponse(page(), headers=SECURITY_HEADERS)
