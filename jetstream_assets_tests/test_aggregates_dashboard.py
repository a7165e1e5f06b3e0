"""The aggregates dashboard page at `/`: served as one self-contained HTML page that loads nothing from
elsewhere and calls only the API's own endpoints (test_report_browser.py drives it in chromium)."""

from __future__ import annotations

import re

import requests

from jetstream_assets.aggregates.rules import Rules
from jetstream_assets.warehouse.local import LocalWarehouse
from jetstream_assets_tests.test_aggregates_helpers import running_server


def test_the_dashboard_is_served_at_the_root_self_contained(tmp_path):
    with running_server(LocalWarehouse(root=str(tmp_path / "warehouse")), Rules()) as url:
        reply = requests.get(f"{url}/", timeout=30)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
        policy = reply.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        page = reply.text
        # nothing to fetch from elsewhere: no external scripts, styles, images or fonts
        assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
        assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", page)
        # the page calls the API's own endpoints, relative to where it is served
        called = set(re.findall(r'api\("([a-z_/]+)', page))
        assert called == {"aggregates_by/", "filters/"}
        assert requests.get(f"{url}/status", timeout=30).text == "OK"
