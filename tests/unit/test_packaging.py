"""What the wheel is built from: the build backend's floor and the packages it finds."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_setuptools_floor_can_build_the_spdx_license() -> None:
    # An SPDX string `license` (PEP 639) is rejected by setuptools before 77 ("must be
    # valid exactly by one definition"): a build with an older one in the venv fails.
    assert isinstance(PYPROJECT["project"]["license"], str)
    [setuptools] = [
        requirement
        for requirement in map(Requirement, PYPROJECT["build-system"]["requires"])
        if requirement.name == "setuptools"
    ]
    assert not setuptools.specifier.contains("76.99")
    assert setuptools.specifier.contains("77.0.3")


def test_every_source_folder_is_a_regular_package() -> None:
    # A folder without __init__.py is packaged only as an implicit namespace package,
    # by accident of the finder's defaults.
    tops = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    folders = {
        path.parent
        for top in tops
        for path in ROOT.glob(f"{top.rstrip('*')}/**/*.py")
        if "__pycache__" not in path.parts
    }
    assert folders
    assert (
        sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists()) == []
    )
