"""Container-group configurations built with salad-cloud-sdk's models (no network)."""

from __future__ import annotations

import json

import pytest

from saladcog import cli, salad
from tests.entrypoint_harness import REPO

EXAMPLES = REPO / "examples" / "salad"


def test_example_files_are_what_the_builder_writes(tmp_path):
    written = salad.write_examples(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in EXAMPLES.glob("*.json"))
    for path in written:
        assert json.loads(path.read_text()) == json.loads((EXAMPLES / path.name).read_text()), path.name


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_every_group_is_gateway_ready_for_a_cog_server(path):
    body = json.loads(path.read_text())
    # The SDK accepts it back (its validators: name pattern, probe and resource bounds).
    assert salad.to_json(salad.from_json(body)) == body
    container = body["container"]
    assert container["environment_variables"]["PORT"] == "5000"
    if path.stem.endswith("-queue"):
        assert_queue_group(body)
    else:
        net = body["networking"]
        assert (net["port"], net["protocol"], net["single_connection_limit"]) == (5000, "http", True)
        assert body["replicas"] >= 2
    assert container["resources"]["gpu_classes"]
    ready = body["readiness_probe"]["exec"]["command"]
    alive = body["liveness_probe"]["exec"]["command"]
    assert body["startup_probe"]["exec"]["command"] == ready
    assert "--liveness" in alive and "--liveness" not in ready
    assert ready[0] == "python"
    # Startup allowance for model loading: Salad caps failures at 20.
    startup = body["startup_probe"]
    assert startup["period_seconds"] * startup["failure_threshold"] >= 900
    command = container.get("command")
    if path.stem == "wrapped-whisper":
        assert command is None  # wrapper/Dockerfile's ENTRYPOINT is the front door
    elif path.stem == "unmodified-cog-image":
        assert command[:5] == ["/sbin/tini", "--", "sh", "-c", (REPO / "ipv6_entrypoint.sh").read_text()]
    else:
        assert command == ["/sbin/tini", "--", "/src/ipv6_entrypoint.sh"]


def assert_queue_group(body: dict) -> None:
    """Jobs reach the front door's queue route from the worker binary; no gateway; from zero."""
    env = body["container"]["environment_variables"]
    assert (env["COG_IPV6_MODE"], env["SALADCOG_JOB_QUEUE"]) == ("openai", "1")
    connection = body["queue_connection"]
    assert (connection["path"], connection["port"]) == ("/queue", 5000) and connection["queue_name"]
    scaler = body["queue_autoscaler"]
    assert scaler["min_replicas"] == 0 and 1 <= scaler["max_replicas"] <= 500
    assert 1 <= scaler["desired_queue_length"] <= 100 and 15 <= scaler["polling_period"] <= 1800
    assert "networking" not in body
    # Jobs are pulled only while this passes: READY, read from /health-check's body.
    assert body["readiness_probe"]["exec"]["command"][1].endswith("probe.py")


def test_queue_examples_cover_every_image_family():
    images = {json.loads(p.read_text())["container"]["image"].rsplit("/", 1)[1].split(":")[0]
              for p in EXAMPLES.glob("*-queue.json")}
    assert images == {"saladcog-whisper", "saladcog-openvoice", "saladcog-metavoice"}


def test_create_queue_turns_any_example_into_a_queue_group():
    body = json.loads((EXAMPLES / "distil-whisper.json").read_text())
    queued = salad.with_queue(body, "long-talks")
    assert_queue_group(queued)
    assert queued["queue_connection"]["queue_name"] == "long-talks"
    assert salad.to_json(salad.from_json(queued)) == queued
    assert "networking" in body  # input untouched


def test_gpu_class_names_resolve_to_ids_and_unknown_names_are_named():
    body = salad.to_json(salad.build_request(salad.EXAMPLES["metavoice"]))
    ids = {name: f"00000000-0000-0000-0000-00000000000{i}" for i, name in enumerate(salad.GPU_24GB)}
    resolved = salad.resolve_gpu_classes(body, ids)
    assert resolved["container"]["resources"]["gpu_classes"] == list(ids.values())
    assert body["container"]["resources"]["gpu_classes"] == list(salad.GPU_24GB)  # input untouched
    with pytest.raises(ValueError, match=r"unknown GPU classes \['RTX 4090 \(24 GB\)'\]"):
        salad.resolve_gpu_classes(body, {k: v for k, v in ids.items() if not k.startswith("RTX 4090")})


def test_create_refuses_without_an_api_key(monkeypatch, capsys):
    monkeypatch.delenv("SALAD_API_KEY", raising=False)
    code = cli.main(["salad", "create", str(EXAMPLES / "whisper-large-v3.json"), "--organization", "acme", "--project", "speech"])
    assert code == 2 and "SALAD_API_KEY" in capsys.readouterr().err
