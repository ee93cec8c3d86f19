"""Every cog.yaml validates against the schema the Cog CLI uses, and points at a real runner
whose baked weights are where saladcog.weights looks for them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from saladcog import weights
from saladcog.schema import load_runner_module

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "third_party" / "cog" / "config_schema_v1.0.json").read_text())
CONFIGS = [REPO / "cog.yaml", *sorted((REPO / "models").glob("*.yaml"))]


def test_every_model_has_a_config():
    assert {p.name for p in CONFIGS} >= {"cog.yaml", "distil-whisper.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_and_points_at_a_runner(path):
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, SCHEMA)
    build = config["build"]
    assert build["gpu"] is True and build["cuda"].startswith("12.")
    assert "socat" in build["system_packages"]  # the IPv6 entrypoint's relay mode
    assert "PYTHONPATH=/src/src" in config["environment"]
    file_name, _, class_name = config["predict"].partition(":")
    module, name = load_runner_module(f"{REPO / file_name}:{class_name}")
    assert hasattr(module, name)
    for package in build["python_packages"]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.+]*", package), package


@pytest.mark.parametrize("path", [p for p in CONFIGS if "whisper" in p.read_text().lower()], ids=lambda p: p.name)
def test_whisper_images_bake_the_weights_the_runner_loads(path):
    config = yaml.safe_load(path.read_text())
    commands = " ".join(step["command"] if isinstance(step, dict) else step for step in config["build"]["run"])
    baked = re.findall(r"snapshot_download\('([^']+)', local_dir='/weights/([^']+)'\)", commands)
    assert baked, commands
    _, _, class_name = config["predict"].partition(":")
    module, _ = load_runner_module(f"{REPO / 'predict.py'}:{class_name}")
    runner = getattr(module, class_name)
    for repo, directory in baked:
        assert weights.WHISPER_REPOS[directory] == repo
        assert directory in runner.baked_models


# What each image does not install: its runner must import (and give its schema) without them.
ABSENT_FROM_IMAGE = {
    "Whisper": ("torch", "transformers", "tiktoken"),
    "DistilWhisper": ("torch", "transformers", "tiktoken"),
    "MetaVoice": ("faster_whisper", "ctranslate2"),
    "OpenVoice": ("faster_whisper", "ctranslate2", "tiktoken"),
}


@pytest.mark.parametrize("runner", sorted(ABSENT_FROM_IMAGE))
def test_runner_imports_with_only_its_images_packages(runner):
    blocked = ", ".join(repr(name) for name in ABSENT_FROM_IMAGE[runner])
    code = (
        f"import sys\nfor name in ({blocked},): sys.modules[name] = None\n"
        f"from saladcog.schema import openapi_schema\n"
        f"print(sorted(openapi_schema({str(REPO / 'predict.py')!r} + ':{runner}')['components']['schemas']['Input']['properties']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
