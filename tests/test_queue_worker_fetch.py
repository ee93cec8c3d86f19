"""The images' build step that fetches SaladCloud's job-queue worker: the same step in every
config, the binary taken from the release tarball only when the tarball's SHA-256 is the one
the release publishes. Run here exactly as Cog's Dockerfile runs it, against a loopback
stand-in of the release."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from release_standin import BINARY, STANDIN_BINARY, ReleaseStandin, tarball

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["cog.yaml", "cog-whisper-turbo.yaml", "cog-distil-whisper.yaml", "cog-openvoice.yaml", "cog-metavoice.yaml"]
TAG = "v0.6.0"


def worker_step(config: str) -> str:
    steps = yaml.safe_load((REPO / config).read_text())["build"]["run"]
    found = [s["command"] for s in steps if BINARY in s["command"]]
    assert len(found) == 1, config
    return found[0]


def run_step(release: ReleaseStandin, dest: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SALADCOG_QUEUE_WORKER_RELEASES": release.endpoint, "SALADCOG_QUEUE_WORKER_DIR": str(dest)}
    command = worker_step("cog.yaml")
    assert command.startswith('python -c "') and command.endswith('"')
    return subprocess.run([sys.executable, "-c", command[len('python -c "'):-1]], env=env, capture_output=True,
                          text=True, timeout=60)


def test_every_image_fetches_the_same_worker_release():
    assert len({worker_step(config) for config in CONFIGS}) == 1
    assert f"/{TAG}/salad-http-job-queue-worker_x86_64.tar.gz" in worker_step("cog.yaml")


def test_the_step_installs_the_released_binary(tmp_path):
    with ReleaseStandin(TAG) as release:
        done = run_step(release, tmp_path)
    assert done.returncode == 0, done.stderr
    installed = tmp_path / BINARY
    assert installed.read_bytes() == STANDIN_BINARY and os.access(installed, os.X_OK)
    assert subprocess.run([str(installed)], capture_output=True, text=True).stdout.strip().endswith("stand-in")


@pytest.mark.parametrize("case", ["tampered tarball", "wrong published digest"])
def test_the_step_refuses_a_tarball_that_is_not_the_published_one(tmp_path, case):
    good = tarball()
    if case == "tampered tarball":
        release = ReleaseStandin(TAG, data=tarball(b"#!/bin/sh\necho evil\n"),
                                 published_sha256=hashlib.sha256(good).hexdigest())
    else:
        release = ReleaseStandin(TAG, published_sha256="0" * 64)
    with release:
        done = run_step(release, tmp_path)
    assert done.returncode != 0
    assert "differs from the published" in done.stderr
    assert not (tmp_path / BINARY).exists()
