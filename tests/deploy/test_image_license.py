"""The image's wheel carries the licence text: the build stage copies LICENSE, and the
build context keeps it (setuptools finds it by its default license-files; without it the
wheel declares Apache-2.0 and ships no text)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from .commands import REPO, run, venv_bin
from .dockerfile import excluded, ignore_patterns
from .test_image import _build_sources, _context_files


def test_build_stage_copies_the_license_into_the_context() -> None:
    assert "LICENSE" in _build_sources()
    assert not excluded("LICENSE", ignore_patterns())


def test_the_build_stage_wheel_carries_the_license_text(tmp_path: Path) -> None:
    # The stage's COPY lines, file by file as the context holds them, then its pip step
    # for setpay itself, as test_image.py builds it.
    source = tmp_path / "src"
    for name in (f for s in _build_sources() for f in _context_files(s)):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    run(
        [str(venv_bin() / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(wheels), str(source)],
    )  # fmt: skip
    (wheel,) = wheels.glob("setpay-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (info,) = {n.split("/", 1)[0] for n in archive.namelist() if ".dist-info/" in n}
        fields = archive.read(f"{info}/METADATA").decode().split("\n\n", 1)[0].splitlines()
        licence = archive.read(f"{info}/licenses/LICENSE").decode()
    assert "License-File: LICENSE" in fields
    assert licence == (REPO / "LICENSE").read_text()
