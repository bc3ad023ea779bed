"""docs/architecture.md names the module of every step of the data flow: every path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "architecture.md"


def test_every_module_the_architecture_page_names_exists():
    paths = re.findall(r"`((?:atso_med|bundles)/[^`\s]+\.(?:py|json))`", PAGE.read_text())
    assert len(paths) >= 20, "the page names the module of every step"
    missing = [p for p in paths if not (REPO / p).is_file()]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
