"""The Whisper image, built from exactly the Dockerfile Cog's generator writes, then run.

Its weights step downloads "Systran/faster-whisper-large-v3" from a Hub stand-in that serves
tiny.en under that name (so the transcript can be checked), the image runs through
ipv6_entrypoint.sh as on Salad, and wrapper/Dockerfile on top of it runs through its ENTRYPOINT.
See tests/image_harness.py for how images are built and run without Docker.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import jiwer
import openai
import pytest

import image_harness
from conftest import normalize
from hub_standin import HubStandin
from release_standin import BINARY, STANDIN_BINARY, ReleaseStandin
from saladcog import salad, weights
from saladcog.client import data_uri
from saladcog.serve import free_port

IMAGE = "localhost/saladcog-whisper:test"
WRAPPED = "localhost/saladcog-whisper-ipv6:test"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image():
    missing = image_harness.missing_tools()
    if missing:
        message = (f"image builds need {', '.join(missing)}: apt-get install podman buildah mmdebstrap "
                   "(scripts/setup.sh does) and put cog-static (../shared/tools) or the cog CLI on PATH")
        image_harness.skip_or_fail(message)
    tiny = weights.embedded_default()
    with HubStandin({"Systran/faster-whisper-large-v3": tiny}, port=image_harness.HUB_PORT), \
            ReleaseStandin("v0.6.0", port=image_harness.QUEUE_WORKER_PORT):
        image_harness.build("cog.yaml", IMAGE)
    return IMAGE


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_weights_step_baked_the_configs_repository(image):
    """model.bin in the image is the file the Hub stand-in served as Systran/faster-whisper-large-v3."""
    container = image_harness.buildah("from", image).strip()
    try:
        mount = Path(image_harness.buildah("mount", container).strip())
        baked = sha256((mount / "weights/whisper-large-v3/model.bin").read_bytes())
        assert (mount / "src/.cog/openapi_schema.json").is_file()
        # The job-queue worker step installed the binary the release stand-in served.
        worker = mount / "usr/local/bin" / BINARY
        assert worker.read_bytes() == STANDIN_BINARY and worker.stat().st_mode & 0o111
    finally:
        image_harness.buildah("rm", container)
    assert baked == sha256((weights.embedded_default() / "model.bin").read_bytes())


def transcribe(host: str, port: int, wav: Path, **inputs) -> httpx.Response:
    return httpx.post(f"http://{host}:{port}/predictions", json={"input": {"audio": data_uri(wav), **inputs}},
                      timeout=120)


def test_the_image_transcribes_over_ipv6_and_ipv4(image, clips, tmp_path):
    """Started with the command examples/salad gives the container group."""
    port = free_port()
    with image_harness.Container(image, salad.OUR_IMAGE_COMMAND, {"PORT": str(port)}, tmp_path / "log") as box:
        box.wait_ready(port, timeout=180)
        for host, clip in (("[::1]", clips[0]), ("127.0.0.1", clips[2])):
            body = transcribe(host, port, clip.wav).json()
            assert body["status"] == "succeeded", body.get("error")
            assert jiwer.wer(clip.text, normalize(body["output"]["text"])) <= 0.15, body["output"]["text"]
            assert body["output"]["metrics"]["model"] == "whisper-large-v3"
        # The bundled schema makes coglet validate: out of bounds is 422, before any decoding.
        refused = transcribe("[::1]", port, clips[0].wav, beam_size=99)
        assert refused.status_code == 422
        assert "beam_size" in refused.text
        assert httpx.get(f"http://[::1]:{port}/openapi.json", timeout=10).status_code == 200
        log = box.log()
    assert "loaded /weights/whisper-large-v3" in log


def test_the_image_serves_openais_audio_api(image, clips, tmp_path):
    """COG_IPV6_MODE=openai in the built image: its Python carries the front door's packages."""
    port = free_port()
    env = {"PORT": str(port), "COG_IPV6_MODE": "openai"}
    with image_harness.Container(image, salad.OUR_IMAGE_COMMAND, env, tmp_path / "log") as box:
        box.wait_ready(port, timeout=180)
        client = openai.OpenAI(base_url=f"http://[::1]:{port}/v1", api_key="unused", max_retries=0)
        with clips[4].wav.open("rb") as upload:
            text = client.audio.transcriptions.create(model="whisper-1", file=upload, response_format="text")
        assert jiwer.wer(clips[4].text, normalize(text)) <= 0.15, text


def test_the_wrapper_image_answers_through_its_entrypoint(image, clips, tmp_path):
    """Scenario 2 of SaladCloud's guide: an existing Cog image, wrapped with wrapper/Dockerfile."""
    image_harness.build_wrapper(image, WRAPPED)
    entrypoint = image_harness.inspect(WRAPPED)["Config"]["Entrypoint"]
    assert entrypoint == ["/usr/bin/tini", "--", "/usr/local/bin/ipv6_entrypoint.sh"]
    port = free_port()
    with image_harness.Container(WRAPPED, None, {"PORT": str(port)}, tmp_path / "log") as box:
        box.wait_ready(port, timeout=180)
        body = transcribe("[::1]", port, clips[3].wav).json()
        assert body["status"] == "succeeded", body.get("error")
        assert jiwer.wer(clips[3].text, normalize(body["output"]["text"])) <= 0.15
