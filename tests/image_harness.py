"""Build a saladcog image as `cog build` does, with Cog's own Dockerfile generator, and run it.

No Docker daemon, Cog CLI or image registry is reachable here, so:
- the Dockerfile and the requirements it copies come from Cog's own generator (`cog-static debug
  --build-context`, built from replicate/cog's Go packages), and the schema `cog build` bundles
  from `cog-static schema`; the bundle step is the one Cog runs after the build
  (`FROM <image>` + `COPY --from=cog_build openapi_schema.json .cog/`);
- podman builds that Dockerfile (vfs storage, chroot isolation, host network for PyPI and
  Debian) on stand-ins for the images it names: Cog's base image is a Debian bookworm with Python
  3.11 made by mmdebstrap, uv's image holds the uv binaries from the uv wheel on PyPI;
- the base stand-in points HF_ENDPOINT at a Hugging Face Hub stand-in on a fixed loopback port
  (tests/hub_standin.py), so the image's own weights step runs unchanged, and
  SALADCOG_QUEUE_WORKER_RELEASES at a stand-in of the queue worker's release
  (tests/release_standin.py);
- `buildah run` (chroot, host network) runs the image's filesystem and command: `podman run`
  cannot set rlimits in this sandbox.

The storage lives outside the repository and is kept between runs (the layers are cached).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from saladcog import probe

REPO = Path(__file__).resolve().parents[1]
STORE = Path(os.environ.get("SALADCOG_IMAGE_STORE", "/var/tmp/saladcog-images"))
# Fixed, because the base stand-in names it in HF_ENDPOINT: a new port would be a new base image
# and rebuild every layer.
HUB_PORT = 47831
HUB_ENDPOINT = f"http://127.0.0.1:{HUB_PORT}"
# Likewise for the stand-in of the job-queue worker's GitHub release (tests/release_standin.py).
QUEUE_WORKER_PORT = 47832
QUEUE_WORKER_RELEASES = f"http://127.0.0.1:{QUEUE_WORKER_PORT}"
DEBIAN = "localhost/saladcog-standin-debian:bookworm-tini"
TOOLS = ("podman", "buildah", "mmdebstrap")
# podman and buildah share one store; vfs, because overlay mounts are not available here.
STORAGE = ["--root", str(STORE / "storage"), "--runroot", str(STORE / "run"), "--storage-driver", "vfs"]


def cog_tool() -> str | None:
    """Cog's own generator: cog-static on PATH (CI puts ../shared/tools there), or a real `cog`."""
    return shutil.which("cog-static") or shutil.which("cog")


def missing_tools() -> list[str]:
    missing = [] if cog_tool() else ["cog-static (or the cog CLI)"]
    return missing + [tool for tool in TOOLS if not shutil.which(tool)]


def skip_or_fail(message: str) -> None:
    """A tool these tests need is missing: skip with `message`, but fail under CI (CI=true),
    whose machine must have them all."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(args: list[str], timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])}… exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def podman(*args: str, timeout: float = 900) -> str:
    return run(["podman", *STORAGE, *args], timeout=timeout, cwd=REPO).stdout


def buildah(*args: str, timeout: float = 120) -> str:
    return run(["buildah", *STORAGE, *args], timeout=timeout, cwd=REPO).stdout


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", *STORAGE, "image", "exists", name], timeout=60).returncode == 0


def _has_env(name: str, variable: str) -> bool:
    """Whether a stand-in built by an earlier version of this harness already sets `variable`."""
    env = podman("image", "inspect", "--format", "{{json .Config.Env}}", name)
    return any(item.startswith(f"{variable}=") for item in json.loads(env or "[]") or [])


@dataclass
class Generated:
    """What Cog's generator says `cog build -f config` builds."""

    dockerfile: str
    context: Path  # the named build context `cog_build` (requirements.txt, …)
    warnings: list[str]


def generate(config: str, workdir: Path) -> Generated:
    """`cog-static debug -f config --build-context DIR`, run from the repository root."""
    context = workdir / "cog_build"
    result = run([cog_tool(), "debug", "-f", config, "--build-context", str(context)], cwd=REPO, timeout=120)
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    return Generated(result.stdout, context, warnings)


def cog_schema(config: str) -> tuple[dict, list[str]]:
    """The OpenAPI schema `cog build -f config` bundles, and any warning on the way."""
    result = run([cog_tool(), "schema", "-f", config], cwd=REPO, timeout=120)
    return json.loads(result.stdout), [line for line in result.stderr.splitlines() if "WARNING" in line]


def base_images(dockerfile: str) -> list[str]:
    """Every image the Dockerfile builds on or copies from (FROM and COPY --from=<image>)."""
    names = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    names += re.findall(r"^COPY\s+--from=(\S+/\S+)\s", dockerfile, re.M)
    return names


def make_standin(name: str, workdir: Path) -> None:
    """A local image under `name`: Cog's Python base (r8.im/cog-base:…) or uv's image."""
    is_base = name.startswith("r8.im/cog-base:")
    if image_exists(name) and (not is_base or _has_env(name, "SALADCOG_QUEUE_WORKER_RELEASES")):
        return
    folder = workdir / re.sub(r"[^A-Za-z0-9.-]+", "_", name)
    folder.mkdir(parents=True)
    if "astral-sh/uv" in name:
        wheel_dir = folder / "wheel"
        version = name.rsplit(":", 1)[1]
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheel_dir),
             "--platform", "manylinux_2_17_x86_64", f"uv=={version}"])
        with zipfile.ZipFile(next(wheel_dir.glob("*.whl"))) as wheel:
            for member in wheel.namelist():
                if re.search(r"\.data/scripts/uvx?$", member):
                    (folder / Path(member).name).write_bytes(wheel.read(member))
                    (folder / Path(member).name).chmod(0o755)
        (folder / "Containerfile").write_text("FROM scratch\nCOPY uv uvx /\n")
    elif name.startswith("r8.im/cog-base:") and "-python3.11" in name:
        make_debian(workdir)
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", folder / "ca-certificates.crt")
        (folder / "Containerfile").write_text(
            f"FROM {DEBIAN}\n"
            # pip installs into the system Python, as in Cog's base images.
            "RUN rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED\n"
            # This machine reaches the package registries through a proxy with its own CA.
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
            "ENV UV_NATIVE_TLS=1\n"
            f"ENV HF_ENDPOINT={HUB_ENDPOINT}\n"
            f"ENV SALADCOG_QUEUE_WORKER_RELEASES={QUEUE_WORKER_RELEASES}\n"
            # Cog's base images carry tini at /sbin/tini as their ENTRYPOINT (Cog's base image
            # generator starts with the same steps as its CUDA Dockerfile, which install it).
            "RUN ln -s /usr/bin/tini /sbin/tini\n"
            'ENTRYPOINT ["/sbin/tini", "--"]\n'
        )
    else:
        raise RuntimeError(f"no stand-in for base image {name}: only Python 3.11 Cog bases and uv")
    podman("build", "--isolation", "chroot", "--network", "host", "-t", name, str(folder))


def make_debian(workdir: Path) -> None:
    if image_exists(DEBIAN):
        return
    tarball = workdir / "debian.tar"
    run(["mmdebstrap", "--variant=minbase",
         "--include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,tini",
         "bookworm", str(tarball)], timeout=900)
    podman("import", str(tarball), DEBIAN)
    tarball.unlink()


@dataclass
class Built:
    tag: str
    seconds: float


def build(config: str, tag: str, cache: bool = True) -> Built:
    """Build `config` as `cog build -f config -t tag` does: Cog's Dockerfile, then the schema bundle."""
    with tempfile.TemporaryDirectory(prefix="saladcog-build-") as scratch:
        workdir = Path(scratch)
        generated = generate(config, workdir)
        for name in base_images(generated.dockerfile):
            make_standin(name, workdir)
        dockerfile = workdir / "Dockerfile"
        dockerfile.write_text(generated.dockerfile)
        started = time.monotonic()
        podman("build", "--isolation", "chroot", "--network", "host", f"--no-cache={not cache}",
               "--build-context", f"cog_build={generated.context}", "-f", str(dockerfile), "-t", f"{tag}-unbundled", ".")
        schema, _ = cog_schema(config)
        bundle = workdir / "bundle"
        bundle.mkdir()
        (bundle / "openapi_schema.json").write_text(json.dumps(schema))
        (bundle / "Dockerfile").write_text(f"FROM {tag}-unbundled\nCOPY --from=cog_build openapi_schema.json .cog/\n")
        podman("build", "--isolation", "chroot", "--build-context", f"cog_build={bundle}",
               "-f", str(bundle / "Dockerfile"), "-t", tag, str(bundle))
        seconds = time.monotonic() - started
    prune()
    return Built(tag, seconds)


def prune() -> None:
    """Remove the images no tag leads to any more (earlier builds of a tag). vfs stores every
    layer as a full copy of the file system, so each build would otherwise leave gigabytes; the
    layers under a tagged image, the build cache of the next build, stay."""
    podman("image", "prune", "--force")


def build_wrapper(base: str, tag: str) -> None:
    """wrapper/Dockerfile on top of `base`, from the repository root as its header says."""
    podman("build", "--isolation", "chroot", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
           "-f", "wrapper/Dockerfile", "-t", tag, ".")
    prune()


def inspect(name: str) -> dict:
    return json.loads(podman("image", "inspect", name))[0]


def layer_sizes(name: str) -> list[tuple[int, str]]:
    """(bytes, instruction) for each layer of the image, oldest first."""
    history = json.loads(podman("history", "--format", "json", "--no-trunc", name))
    return [(entry.get("size", 0), entry.get("CreatedBy", entry.get("createdBy", ""))) for entry in reversed(history)]


class Container:
    """The image's filesystem and a command, run with `buildah run` (chroot, host network).

    `command=None` runs what `docker run IMAGE` runs: ENTRYPOINT + CMD."""

    def __init__(self, image: str, command: list[str] | None, env: dict[str, str], log: Path):
        self.image, self.env, self.log_path = image, env, log
        config = inspect(image)["Config"]
        self.command = command or [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        self.workdir = config.get("WorkingDir") or "/"
        self.name = f"saladcog-test-{os.getpid()}-{time.monotonic_ns()}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Container:
        buildah("from", "--name", self.name, self.image)
        env_args = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["buildah", *STORAGE, "run", "--isolation", "chroot", "--network", "host",
             "--workingdir", self.workdir, *env_args, self.name, "--", *self.command],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, port: int, timeout: float) -> float:
        """Seconds until /health-check on [::1] says READY."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise AssertionError(f"container exited {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if probe.health("::1", port, timeout=2.0) == "READY":
                    return time.monotonic() - started
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"not READY within {timeout} s:\n{self.log()[-4000:]}")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(20)
        self._log.close()
        buildah("rm", self.name)
