"""`./dev`: the first command a newcomer runs says in one line that it installs (and for how
long), then stays quiet; changed build inputs say it updates. Python stands in as a small
script recording what `dev` asks of it, so the test needs neither a minute nor the network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Records its arguments and PYTHONWARNINGS; `-m venv DIR` makes DIR/bin/python (a copy of itself).
STAND_IN = """#!/usr/bin/env bash
echo "$* [PYTHONWARNINGS=${PYTHONWARNINGS:-}]" >> "$CALLS"
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
"""


def run_setup(checkout: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHON": str(checkout / "python-stand-in"), "CALLS": str(checkout / "calls")}
    return subprocess.run(["./dev", "setup"], cwd=checkout, env=env, capture_output=True, text=True, timeout=60)


def calls(checkout: Path) -> list[str]:
    path = checkout / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_first_install_says_what_it_does_then_stays_quiet(tmp_path: Path) -> None:
    shutil.copy(REPO / "dev", tmp_path / "dev")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(REPO / "setup.py", tmp_path / "setup.py")
    for package, patterns in (("cdc_reader", ("*.pyx", "*.pxd")), ("mappers", ("*.pyx",)), ("query", ("*.pyx",))):
        (tmp_path / package).mkdir()
        for source in [path for pattern in patterns for path in (REPO / package).glob(pattern)]:
            shutil.copy(source, tmp_path / package / source.name)
    (tmp_path / "python-stand-in").write_text(STAND_IN)
    (tmp_path / "python-stand-in").chmod(0o755)

    first = run_setup(tmp_path)
    assert (first.returncode, first.stdout, first.stderr) == (
        0, "", "installing voucher-activity and its dependencies into .venv (first run, about a minute)\n")
    assert [call for call in calls(tmp_path) if "pip" in call] == [
        "-m pip install --quiet --upgrade pip [PYTHONWARNINGS=ignore]",
        "-m pip install --quiet -e .[test] [PYTHONWARNINGS=ignore]",
    ]

    made = len(calls(tmp_path))
    again = run_setup(tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(calls(tmp_path)) == made  # nothing installed twice

    with (tmp_path / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# a new dependency\n")
    changed = run_setup(tmp_path)
    assert (changed.returncode, changed.stderr) == (0, "the build inputs changed (pyproject.toml, setup.py, cdc_reader/*.pyx, *.pxd, mappers/*.pyx, query/*.pyx): updating .venv (about a minute)\n")
    assert len(calls(tmp_path)) == made + 2
