#!/bin/sh
# Set up a fresh machine for saladcog development: system tools, the project virtualenv
# (.venv, CPU torch), and the package with every extra. Safe to run again: it skips what is done.
set -eu

cd "$(dirname "$0")/.."

need_apt=""
command -v socat >/dev/null 2>&1 || need_apt="$need_apt socat"
command -v ffmpeg >/dev/null 2>&1 || need_apt="$need_apt ffmpeg"
# The image tests build Cog's Dockerfile with podman on stand-in base images (tests/image_harness.py).
for tool in podman buildah mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || need_apt="$need_apt $tool"
done
if [ -n "$need_apt" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing$need_apt" >&2
        apt-get update -qq >/dev/null
        # shellcheck disable=SC2086 # the package list is meant to split into words
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_apt >/dev/null
    else
        echo "setup: please install$need_apt (apt-get needs root)" >&2
        exit 1
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi

stamp=.venv/.saladcog-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # Pin torch first: the CPU build; an unpinned torch would pull several GB of CUDA packages.
    .venv/bin/python -m pip install -q torch==2.13.0
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi

# One virtualenv per Cog server generation, for the IPv6 entrypoint tests (tests never download):
# cog 0.9.9 (uvicorn, host hard-coded), 0.16.12 (uvicorn, --host), 0.23.1 (coglet, Rust).
for cog_version in 0.9.9 0.16.12 0.23.1; do
    venv=.venvs/cog-$cog_version
    if [ ! -f "$venv/.installed" ]; then
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q "cog==$cog_version"
        touch "$venv/.installed"
    fi
done

# The diarization runner (pyannote.audio 4.0.7) runs in a virtualenv of its own layered on .venv
# (a .pth file names .venv's site-packages), so it shares .venv's torch, faster-whisper and Cog.
# pyannote needs torchaudio, and PyPI's torchaudio 2.11 links libtorch_cuda.so, which a CPU torch
# does not have: its C extension cannot load here. pyannote uses only torchaudio's pure-Python
# parts (Kaldi fbank, resampling) when it is given a waveform, and torchaudio skips an extension
# whose library is absent, so the libraries are removed. The image installs the real cu128 torchaudio.
venv=.venvs/diarize
if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ] || [ scripts/setup.sh -nt "$venv/.installed" ]; then
    rm -rf "$venv"
    .venv/bin/python -m venv "$venv"
    purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
    own=$("$venv/bin/python" -c "$purelib")
    .venv/bin/python -c "$purelib" >"$own/saladcog-shared-venv.pth"
    "$venv/bin/python" -m pip install -q -e '.[diarize]'
    rm -f "$own"/torchaudio/lib/*.so
    touch "$venv/.installed"
fi
