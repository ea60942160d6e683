"""A wheel carries everything the app reads at run time: migrations, templates, static files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_holds_migrations_templates_and_static_files(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("condastore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        *(
            f"condastore_core/db/migrations/versions/{p.name}"
            for p in (REPO / "src/condastore_core/db/migrations/versions").glob("*.py")
        ),
        "condastore_core/db/migrations/env.py",
        *(
            f"condastore_web/templates/{p.name}"
            for p in (REPO / "src/condastore_web/templates").glob("*.html")
        ),
        "condastore_web/static/app.css",
        "condastore_web/static/app.js",
    }
    assert expected <= names, sorted(expected - names)
