"""What `pip install .` and the Docker image get: every package, module and data file.

The project maps four folders onto one import name (pyproject's package-dir), so
setuptools only ships the packages pyproject lists. A package missing from that
list installs cleanly and then fails on its first lazy import, which no editable
install notices; these tests read the list against the tree and the built wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The folders that ship, each under the import name pyproject maps it to.
SOURCE_ROOTS = ("stemscribe", "core", "worker", "bots")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dirs() -> dict[str, Path]:
    """Import name -> folder, for every folder under the shipped roots that holds Python code."""
    mapping = {name: ROOT / folder for name, folder in _config()["package-dir"].items()}
    found: dict[str, Path] = {}
    for top in SOURCE_ROOTS:
        for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts or not any(folder.glob("*.py")):
                continue
            base = max((n for n, f in mapping.items() if folder == f or f in folder.parents),
                       key=lambda n: len(mapping[n].parts))
            rest = folder.relative_to(mapping[base]).parts
            found[".".join((base, *rest))] = folder
    return found


def test_every_code_folder_is_a_listed_package():
    listed = set(_config()["packages"])
    for name, folder in _package_dirs().items():
        assert (folder / "__init__.py").is_file(), f"{folder} holds Python code but no __init__.py"
        assert name in listed, f"{name} ({folder.relative_to(ROOT)}) is missing from pyproject's packages list"
    assert listed <= set(_package_dirs()), "pyproject lists a package that has no folder"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # Built from a copy: setuptools reuses a checkout's build/ folder, whose stale
    # files would hide a package that the list no longer ships.
    source = tmp_path_factory.mktemp("src") / "stemscribe"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "out", "models", "__pycache__", "*.egg-info", "results", ".pytest_cache"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", str(source), "-w", str(out)], check=True, cwd=out)
    (path,) = out.glob("stemscribe-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_the_wheel_holds_every_module_of_every_package(wheel):
    names = set(wheel.namelist())
    missing = []
    for package, folder in _package_dirs().items():
        prefix = package.replace(".", "/")
        missing += [f"{prefix}/{py.name}" for py in folder.glob("*.py") if f"{prefix}/{py.name}" not in names]
    assert not missing, f"not in the wheel: {missing}"


def test_the_wheel_ships_the_example_clip_where_the_cli_looks(wheel):
    from stemscribe.cmd_example import EXAMPLE_FILE_NAME, example_clip

    assert example_clip().is_file()
    assert f"stemscribe/examples/{EXAMPLE_FILE_NAME}" in wheel.namelist()
    assert not [n for n in wheel.namelist() if n.startswith(("tests/", "bench/", "core/", "worker/", "bots/"))], \
        "the wheel must not ship bare top-level packages or the test/bench folders"


def test_the_wheel_declares_the_console_script(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "stemscribe = stemscribe.cli:main" in wheel.read(entry_points).decode()


def test_the_readme_layout_table_names_every_module():
    """The README's layout table matches the tree: each module and subpackage is named in its folder's row."""
    readme = (ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `") and line.split("|")[1].strip().strip("`").rstrip("/") in SOURCE_ROOTS}
    for top in SOURCE_ROOTS:
        row = rows.get(f"{top}/")
        assert row, f"no layout row for {top}/"
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.name == "__init__.py" or path.name == "__main__.py" or "__pycache__" in path.parts:
                continue
            name = path.stem if path.parent == ROOT / top else path.parent.name
            if path.name.startswith("cmd_"):
                name = "cmd_"
            assert f"`{name}" in row, f"README's layout row for {top}/ does not name {path.relative_to(ROOT)}"
