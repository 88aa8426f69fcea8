"""A plain `pip install` gets everything the notebooks need, fixtures included."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_the_package_and_its_fixtures(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("course-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"course/{p.name}" for p in (ROOT / "course").glob("*.py")}
    fixtures = {f"course/fixtures/{p.name}" for p in (ROOT / "course" / "fixtures").glob("*.npz")}
    assert fixtures and modules <= names and fixtures <= names
    assert not any(n.startswith(("tests/", "notebooks/", "scripts/")) for n in names)
