"""deploy/image-check.sh when a Docker command fails: exit status 1, a line naming the step
and the command, and its volumes, container and temporary directories removed.

There is no Docker engine here, so a stand-in ``docker`` first on PATH plays one that
fails: it answers every command but the one a test makes it refuse, and logs each call.
"""

from __future__ import annotations

import os
from pathlib import Path

from .commands import REPO, run

SCRIPT = REPO / "deploy" / "image-check.sh"

_FAKE_DOCKER = """#!/usr/bin/env bash
echo "$*" >>"$DOCKER_LOG"
if [[ "$*" == "$DOCKER_REFUSES"* ]]; then
    echo "Error response from daemon: refused by the test" >&2
    exit 125
fi
"""


def _image_check(tmp_path: Path, refuses: str) -> tuple[int, str, list[str], Path]:
    """Run the script against a ``docker`` that refuses commands starting with ``refuses``."""
    bin_dir, scratch, log = tmp_path / "bin", tmp_path / "scratch", tmp_path / "docker.log"
    bin_dir.mkdir()
    scratch.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(_FAKE_DOCKER)
    docker.chmod(0o755)
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", TMPDIR=str(scratch),
        DOCKER_LOG=str(log), DOCKER_REFUSES=refuses,
    )  # fmt: skip
    done = run(["bash", str(SCRIPT), "setpay:test"], env=env, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stderr, calls, scratch


def test_a_failed_docker_command_fails_the_check_naming_it(tmp_path: Path) -> None:
    code, err, calls, scratch = _image_check(tmp_path, "volume create")
    assert code == 1, err
    assert "image-check: FAILED" in err and "docker volume create" in err, err
    # Cleaned up all the same: the container and the volumes, the temporary directories.
    assert any(call.startswith("rm -f setpay-check-") for call in calls), calls
    assert any(call.startswith("volume rm setpay-check-") for call in calls), calls
    assert list(scratch.iterdir()) == []


def test_without_an_image_the_check_is_a_usage_error(tmp_path: Path) -> None:
    done = run(["bash", str(SCRIPT)], check=False)
    assert (done.returncode, done.stderr.strip()) == (2, "usage: image-check.sh IMAGE")
