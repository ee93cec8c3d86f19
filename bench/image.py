"""The Whisper image: build time, size layer by layer, and time from start to READY.

    PATH=$PATH:../shared/tools .venv/bin/python bench/image.py [--no-cache] [--starts 3]

Built as tests/test_image.py builds it (Cog's generated Dockerfile, podman, stand-in base images,
the weights step served by a local Hub stand-in with tiny.en under large-v3's name). --no-cache
rebuilds every layer of the Dockerfile (the stand-in base images themselves stay cached). The
stand-in base is a Debian with Python 3.11, not r8.im/cog-base:cuda12.8-python3.11, so the base
layer's size here is not the real one; the layers this project adds are. Start to READY is
measured from `buildah run` of the image through ipv6_entrypoint.sh until /health-check on [::1]
says READY, on the CPU, with tiny.en: it measures the image's own start-up, not a large-v3 load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import image_harness  # noqa: E402
from hub_standin import HubStandin  # noqa: E402
from saladcog import weights  # noqa: E402
from saladcog.serve import free_port  # noqa: E402

TAG = "localhost/saladcog-whisper:bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer of Cog's Dockerfile")
    parser.add_argument("--starts", type=int, default=3, help="container starts to time")
    args = parser.parse_args()
    missing = image_harness.missing_tools()
    if missing:
        sys.exit(f"bench/image.py needs {', '.join(missing)} on PATH")

    with HubStandin({"Systran/faster-whisper-large-v3": weights.embedded_default()}, port=image_harness.HUB_PORT):
        built = image_harness.build("cog.yaml", TAG, cache=not args.no_cache)
    layers = image_harness.layer_sizes(TAG)
    starts = []
    with tempfile.TemporaryDirectory() as scratch:
        for attempt in range(args.starts):
            port = free_port()
            log = Path(scratch) / f"start-{attempt}.log"
            with image_harness.Container(TAG, ["/src/ipv6_entrypoint.sh"], {"PORT": str(port)}, log) as box:
                starts.append(box.wait_ready(port, timeout=300))

    image_harness.podman("rmi", TAG, f"{TAG}-unbundled")  # gigabytes on vfs; the test's own image keeps the cache
    image_harness.prune()
    print(f"build ({'no cache' if args.no_cache else 'cached layers reused'}): {built.seconds:.0f} s")
    print(f"image: {sum(size for size, _ in layers) / 1e6:.0f} MB in {len(layers)} layers")
    for size, instruction in layers:
        if size > 100_000:
            print(f"  {size / 1e6:8.1f} MB  {instruction.strip()[:110]}")
    print(f"start to READY: median {statistics.median(starts):.1f} s over {len(starts)} starts "
          f"({', '.join(f'{s:.1f}' for s in starts)})")
    print(json.dumps({"build_seconds": built.seconds, "layers": layers, "start_to_ready": starts}))


if __name__ == "__main__":
    main()
