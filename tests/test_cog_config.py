"""Every image config, checked by Cog's own code: the config loader, the Dockerfile generator and
the static schema generator (`cog-static`, or a real `cog` CLI), as `cog build -f <config>` runs
them. The schema saladcog serves locally must be the one a built image bundles."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import image_harness
from saladcog import weights
from saladcog.schema import load_runner_module, openapi_schema

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["cog.yaml", *sorted(p.name for p in REPO.glob("cog-*.yaml"))]
WHISPER_CONFIGS = [c for c in CONFIGS if "whisper" in (REPO / c).read_text().lower()]
PARAKEET_CONFIG = "cog-parakeet.yaml"
TTS_CONFIGS = [c for c in CONFIGS if c not in WHISPER_CONFIGS and c != PARAKEET_CONFIG]
# The images that install torch: the TTS ones, and Whisper with pyannote's diarization.
TORCH_CONFIGS = [c for c in CONFIGS if "torch==" in (REPO / yaml.safe_load((REPO / c).read_text())["build"]["python_requirements"]).read_text()]
TORCH_FREE_WHISPER_CONFIGS = [c for c in WHISPER_CONFIGS if c not in TORCH_CONFIGS]
SERVED_COG = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if '"cog==' in line)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def runner_of(config: str) -> str:
    return yaml.safe_load((REPO / config).read_text())["run"]


@pytest.fixture(scope="module")
def cog_tool():
    if image_harness.cog_tool():
        return image_harness.cog_tool()
    message = ("Cog's generator is not on PATH: put replicate/cog's `cog` CLI, or the project's "
               "cog-static build (../shared/tools, which .ci/run adds to PATH), on PATH to run these")
    image_harness.skip_or_fail(message)


@pytest.fixture(scope="module")
def generated(cog_tool, tmp_path_factory):
    return {c: image_harness.generate(c, tmp_path_factory.mktemp(c)) for c in CONFIGS}


def test_every_model_has_an_image():
    assert set(CONFIGS) == {"cog.yaml", "cog-whisper-turbo.yaml", "cog-distil-whisper.yaml",
                            "cog-openvoice.yaml", "cog-metavoice.yaml", PARAKEET_CONFIG,
                            "cog-whisper-diarize.yaml"}


@pytest.mark.parametrize("config", CONFIGS)
def test_cog_generates_the_dockerfile_without_a_warning(generated, config):
    result = generated[config]
    assert result.warnings == []
    dockerfile = result.dockerfile
    assert f'ENV COG_PREDICT_TYPE_STUB="{runner_of(config)}"' in dockerfile
    # The Cog SDK in the image is the one the tests serve with.
    served = re.search(r"cog==[0-9.]+", SERVED_COG).group(0)
    assert re.search(rf"uv pip install .*\b{re.escape(served)}\s*$", dockerfile, re.M), dockerfile
    # `cog build -f X` copies X from the build context over cog.yaml: X must be there.
    copied = re.findall(r"^RUN cp /src/(\S+) /src/cog.yaml$", dockerfile, re.M)
    assert copied == ([] if config == "cog.yaml" else [config]) and (REPO / config).is_file()


@pytest.mark.parametrize("config", CONFIGS)
def test_every_image_carries_the_job_queue_worker_checked_against_its_sha256(generated, config):
    """Every image takes queue jobs (docs/queue.md): its build fetches the worker binary and
    refuses one whose SHA-256 differs from the release's published one."""
    dockerfile = generated[config].dockerfile
    step = next((line for line in dockerfile.splitlines() if "salad-http-job-queue-worker_x86_64.tar.gz" in line), "")
    assert step.startswith("RUN ") and "/v0.6.0/" in step and ".sha256" in step and "sys.exit" in step, step


@pytest.mark.parametrize("config", CONFIGS)
def test_no_offline_variable_is_in_force_while_the_weights_download(generated, config):
    lines = generated[config].dockerfile.splitlines()
    weights_step = next(i for i, line in enumerate(lines) if "snapshot_download" in line)
    before = "\n".join(lines[:weights_step])
    for variable in OFFLINE_VARIABLES:
        assert variable not in before
    assert "socat" in before  # ipv6_entrypoint.sh relay mode


@pytest.mark.parametrize("config", TORCH_FREE_WHISPER_CONFIGS)
def test_whisper_images_carry_a_cuda_12_base_and_no_torch(generated, config):
    build = yaml.safe_load((REPO / config).read_text())["build"]
    assert build["gpu"] is True and build["cuda"] == "12.8" and "cudnn" not in build
    assert generated[config].dockerfile.startswith("#syntax=docker/dockerfile:1.4\nFROM r8.im/cog-base:cuda12.8-python3.11\n")
    requirements = (generated[config].context / "requirements.txt").read_text()
    assert "torch" not in requirements and "ctranslate2==4.8.5" in requirements


@pytest.mark.parametrize("config", TORCH_CONFIGS)
def test_torch_images_get_the_cuda_12_8_torch(generated, config):
    """PyPI's torch builds of 2.10 and later need CUDA 13; Cog maps torch 2.11.0 + cuda 12.8 to
    PyTorch's cu128 wheel index and its cu128 base image."""
    requirements = (generated[config].context / "requirements.txt").read_text().splitlines()
    assert requirements[0] == "--extra-index-url https://download.pytorch.org/whl/cu128/"
    assert "torch==2.11.0" in requirements
    assert "FROM r8.im/cog-base:cuda12.8-python3.11-torch2.11.0\n" in generated[config].dockerfile


@pytest.mark.parametrize("config", CONFIGS)
def test_the_served_schema_is_the_one_cog_bundles(cog_tool, config):
    cog_schema, warnings = image_harness.cog_schema(config)
    assert warnings == []
    ours = openapi_schema(str(REPO / runner_of(config)))
    # info.version is the version of the CLI that wrote the file; everything else must agree.
    cog_schema["info"].pop("version")
    ours["info"].pop("version")
    assert ours == cog_schema, json.dumps(cog_schema["components"]["schemas"]["Input"], indent=1)


def test_subtitle_choices_are_the_formats_the_runner_writes(cog_tool):
    module, _ = load_runner_module(f"{REPO / 'predict.py'}:Whisper")
    schema, _ = image_harness.cog_schema("cog.yaml")
    assert schema["components"]["schemas"]["transcription"]["enum"] == list(module.SUBTITLE_FORMATS)


@pytest.mark.parametrize("config", WHISPER_CONFIGS)
def test_whisper_images_bake_the_weights_the_runner_loads(config):
    text = yaml.safe_load((REPO / config).read_text())
    commands = " ".join(step["command"] for step in text["build"]["run"])
    baked = re.findall(r"snapshot_download\('([^']+)', local_dir='/weights/([^']+)'\)", commands)
    assert baked, commands
    module, name = load_runner_module(str(REPO / text["run"]))
    for repo, directory in baked:
        assert weights.WHISPER_REPOS[directory] == repo
        assert directory in getattr(module, name).baked_models


def test_parakeet_image_carries_onnxruntimes_cuda_12_build_and_no_torch(generated):
    """onnxruntime-gpu 1.27 and later on PyPI are CUDA 13 builds; 1.26.0 is CUDA 12 + cuDNN 9."""
    build = yaml.safe_load((REPO / PARAKEET_CONFIG).read_text())["build"]
    assert build["gpu"] is True and build["cuda"] == "12.8"
    assert generated[PARAKEET_CONFIG].dockerfile.startswith("#syntax=docker/dockerfile:1.4\nFROM r8.im/cog-base:cuda12.8-python3.11\n")
    requirements = (generated[PARAKEET_CONFIG].context / "requirements.txt").read_text().splitlines()
    assert "onnxruntime-gpu==1.26.0" in requirements and "onnx-asr==0.12.0" in requirements
    assert not [line for line in requirements if line.startswith(("torch", "onnxruntime=="))]


def test_parakeet_image_bakes_the_weights_the_runner_loads(generated):
    """One variable, set before the build steps, names the model the build downloads and the
    runner loads; the step's repository is onnx-asr's export of that model."""
    config = yaml.safe_load((REPO / PARAKEET_CONFIG).read_text())
    environment = dict(line.split("=", 1) for line in config["environment"])
    name = environment["SALADCOG_PARAKEET_MODEL"]
    assert name == weights.PARAKEET_DEFAULT and environment["SALADCOG_WEIGHTS_ROOT"] == "/weights"
    step = next(line for line in generated[PARAKEET_CONFIG].dockerfile.splitlines() if "snapshot_download" in line)
    code = step.removeprefix('RUN python -c "').removesuffix('"')
    assert step.startswith('RUN python -c "') and "SALADCOG_PARAKEET_MODEL" in code
    # The step's own code, run against the names it would compute (no download).
    calls = []
    namespace = {"os": type("os", (), {"environ": {"SALADCOG_PARAKEET_MODEL": name}})}
    exec(code.replace("import os; from huggingface_hub import snapshot_download;", "").strip(),
         {**namespace, "snapshot_download": lambda repo, **kw: calls.append((repo, kw))})
    [(repo, options)] = calls
    assert repo == weights.PARAKEET_REPOS[name] and options["local_dir"] == f"/weights/{name}"
    assert "encoder-model.onnx*" in options["allow_patterns"] and "vocab.txt" in options["allow_patterns"]


# What each image does not install: its runner must import (and give its schema) without them.
ABSENT_FROM_IMAGE = {
    "Whisper": ("torch", "transformers", "tiktoken"),
    "WhisperTurbo": ("torch", "transformers", "tiktoken"),
    "DistilWhisper": ("torch", "transformers", "tiktoken"),
    "MetaVoice": ("faster_whisper", "ctranslate2"),
    "OpenVoice": ("faster_whisper", "ctranslate2", "tiktoken"),
    "Parakeet": ("torch", "transformers", "faster_whisper", "ctranslate2"),
    "WhisperDiarize": ("transformers", "tiktoken", "pyannote"),
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


def _resolve(requirements: list[str], workdir: Path) -> str:
    """uv's annotated resolution of `requirements` for the images' platform."""
    source = workdir / "resolvable.txt"
    source.write_text("\n".join(requirements) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--native-tls", "--no-header",
         "--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.11", str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("config", [c for c in CONFIGS if c != "cog-whisper-diarize.yaml"])
def test_image_requirements_resolve_for_linux_x86_64(generated, config):
    """Resolved from PyPI for the image's platform (x86_64 manylinux, CPython 3.11) by uv, the
    resolver Cog's Dockerfile carries. PyTorch's cu128 index is not reachable here, so torch is
    left out of the TTS resolutions (its line and index are checked above): nothing else may
    bring in a torch or a CUDA 13 library. pyannote needs torch, so the diarization image is
    resolved with its torch pins kept (PyPI's torch 2.11.0 is the same release, built for CUDA 13):
    see test_diarization_requirements_resolve_around_the_cu128_torch."""
    requirements = [line for line in (generated[config].context / "requirements.txt").read_text().splitlines()
                    if not line.startswith("--extra-index-url") and not line.startswith("torch==")]
    compiled = _resolve(requirements, generated[config].context)
    pinned = [line.split("==")[0].lower() for line in compiled.splitlines() if "==" in line and not line.startswith(" ")]
    for requirement in requirements:
        if "==" in requirement:
            assert requirement.split("==")[0].lower().replace("_", "-") in [p.replace("_", "-") for p in pinned]
    assert "torch" not in pinned
    assert not [p for p in pinned if p.startswith("nvidia-") and ("cu13" in p or not p.endswith("-cu12"))], pinned


def _pins_and_sources(compiled: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, the packages it is there for) from uv's annotated output."""
    pins: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in compiled.splitlines():
        if "==" in line and not line.startswith(" "):
            name, version = line.strip().split("==")
            current = name.lower().replace("_", "-")
            pins[current] = (version, set())
        elif current and line.strip().startswith("#") and line.strip() not in ("# via", "#"):
            via = line.strip().lstrip("#").strip().removeprefix("via ").strip()
            if via and not via.startswith("-r "):
                pins[current][1].add(via.lower().replace("_", "-"))
    return pins


def test_diarization_requirements_resolve_around_the_cu128_torch(generated, tmp_path):
    """torch, torchaudio and torchcodec stay at the versions the image pins (pyannote and
    everything else accept them), and every CUDA library in the resolution is there for torch
    alone: in the image torch comes from the cu128 index, which brings its CUDA 12 libraries."""
    config = "cog-whisper-diarize.yaml"
    lines = (generated[config].context / "requirements.txt").read_text().splitlines()
    assert lines[0] == "--extra-index-url https://download.pytorch.org/whl/cu128/"
    pins = _pins_and_sources(_resolve(lines[1:], tmp_path))
    assert pins["torch"][0] == "2.11.0" and pins["torchaudio"][0] == "2.11.0" and pins["torchcodec"][0] == "0.11.0"
    assert pins["pyannote-audio"][0] == "4.0.7" and pins["ctranslate2"][0] == "4.8.5"
    cuda = {name: sources for name, (_, sources) in pins.items() if name.startswith(("nvidia-", "cuda-", "triton"))}
    assert cuda and all(sources <= {"torch"} | set(cuda) for sources in cuda.values()), cuda


def test_diarization_image_bakes_community_1_with_the_token_as_a_build_secret(generated):
    config = "cog-whisper-diarize.yaml"
    dockerfile = generated[config].dockerfile
    step = next(line for line in dockerfile.splitlines() if "speaker-diarization-community-1" in line)
    assert step.startswith("RUN --mount=type=secret,id=hf_token,target=/run/secrets/hf_token ")
    repo, directory = re.search(r"snapshot_download\('([^']+)', local_dir='/weights/([^']+)'", step).groups()
    assert weights.DIARIZATION_REPOS[directory] == repo
    # The token is read from the mounted file in that one step: never an ARG, ENV or a layer's file.
    assert "token=pathlib.Path('/run/secrets/hf_token').read_text().strip()" in step
    assert not re.search(r"^(ARG|ENV)\b.*(TOKEN|HF_)", dockerfile, re.M | re.I), dockerfile
    assert "PYANNOTE_METRICS_ENABLED=0" in dockerfile.split("\nRUN ")[0]  # before any step runs
