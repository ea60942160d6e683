"""axe-core, the accessibility checker pages are run through in Chromium.

``.ci/run`` installs it from npm into ``.ci/node``; a test run without it
installs it there on first use (npm must be on the PATH, else the tests skip).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

AXE_VERSION = "4.14.1"
NODE_DIR = Path(__file__).resolve().parents[2] / ".ci" / "node"
AXE_SCRIPT = NODE_DIR / "node_modules" / "axe-core" / "axe.min.js"


def axe_script() -> Path:
    if not AXE_SCRIPT.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot install axe-core")
        subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-save", "--no-audit",
             "--no-fund", f"axe-core@{AXE_VERSION}"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return AXE_SCRIPT


def check_page(page, script: Path) -> list[str]:
    """Serious and critical axe violations of the page, and horizontal overflow, as lines."""
    page.add_script_tag(path=str(script))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    problems = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    width = page.evaluate("() => document.documentElement.scrollWidth")
    viewport = page.viewport_size["width"]
    if width > viewport:
        problems.append(f"horizontal overflow: {width} px wide in a {viewport} px viewport")
    return problems
