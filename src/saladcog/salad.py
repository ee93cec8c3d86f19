"""SaladCloud container groups for Cog images, built with the salad-cloud-sdk models.

Every group: the gateway on the Cog port (IPv6, reached through ipv6_entrypoint.sh), one active
connection per instance (a Cog server with concurrency 1 answers 409 to a second request), exec
probes that read /health-check's body (it always answers 200), and the GPU classes by name,
resolved to SaladCloud's ids when the group is created.

    python -m saladcog.salad write examples/salad            # regenerate the example files
    python -m saladcog.salad create examples/salad/whisper-large-v3.json \\
        --organization ORG --project PROJECT [--image IMAGE]   # SALAD_API_KEY in the environment
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from salad_cloud_sdk import SaladCloudSdk
from salad_cloud_sdk.models import (
    ContainerConfiguration,
    ContainerGroupCreationRequest,
    ContainerGroupLivenessProbe,
    ContainerGroupProbeExec,
    ContainerGroupQueueConnection,
    ContainerGroupReadinessProbe,
    ContainerGroupStartupProbe,
    ContainerNetworkingProtocol,
    ContainerRestartPolicy,
    CreateContainerGroupNetworking,
    CreateContainerResourceRequirements,
    QueueBasedAutoscalerConfiguration,
    TheContainerGroupNetworkingLoadBalancer,
)

import saladcog

REPO_ROOT = Path(saladcog.__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "ipv6_entrypoint.sh"
PROBE = Path(__file__).with_name("probe.py")
SUPERVISOR = Path(__file__).with_name("supervisor.py")

# Where each kind of image carries the entrypoint and the probe. `cog build` copies this
# repository to /src; wrapper/Dockerfile installs them under /usr/local. Cog images run with
# tini as ENTRYPOINT, and Salad's `command` replaces ENTRYPOINT and CMD together, so an
# override starts tini again.
TINI = ["/sbin/tini", "--"]
OUR_IMAGE_COMMAND = [*TINI, "/src/ipv6_entrypoint.sh"]
OUR_IMAGE_PROBE = ["python", "/src/src/saladcog/probe.py"]
WRAPPED_PROBE = ["python", "/usr/local/lib/saladcog/probe.py"]


def unmodified_command() -> list[str]:
    """Command override that runs an UNMODIFIED Cog image on IPv6: the entrypoint's text is passed
    to `sh -c`, and the supervisor's text to it (the image has neither file). Without socat in the
    image it binds (auto mode never needs socat for a known Cog)."""
    return [*TINI, "sh", "-c", ENTRYPOINT.read_text(), "ipv6_entrypoint.sh",
            "--supervisor-code", SUPERVISOR.read_text()]


def unmodified_probe() -> list[str]:
    """Exec probe for an unmodified image: the probe's text passed to `python -c`."""
    return ["python", "-c", PROBE.read_text()]


@dataclass(frozen=True)
class GroupConfig:
    name: str  # container group name: lower case, digits, dashes
    image: str
    gpu_classes: tuple[str, ...]  # names as SaladCloud lists them, e.g. "RTX 4090 (24 GB)"
    command: tuple[str, ...] | None  # None: the image's own ENTRYPOINT and CMD
    probe: tuple[str, ...]  # readiness probe command; liveness adds --liveness
    cpu: int = 4
    memory_mb: int = 16384
    storage_gb: int = 50
    replicas: int = 3  # Salad nodes come and go: more than one keeps the service up
    port: int = 5000
    env: dict[str, str] = field(default_factory=dict)
    # Model loading: allow this long before the startup probe gives up on a node.
    startup_seconds: int = 900
    # A SaladCloud job queue to take jobs from (docs/queue.md): no gateway, the worker binary
    # beside the server, and the group scaled with the queue's length, from zero.
    queue: str | None = None


# How a queue group connects and scales: jobs go to the front door's queue route on the Cog port;
# one job per instance at a time, so the autoscaler aims at 2 waiting jobs per instance.
QUEUE_PATH = "/queue"
QUEUE_ENV = {"COG_IPV6_MODE": "openai", "SALADCOG_JOB_QUEUE": "1"}
QUEUE_AUTOSCALER = {"min_replicas": 0, "max_replicas": 10, "desired_queue_length": 2, "polling_period": 30,
                    "max_upscale_per_minute": 5, "max_downscale_per_minute": 2}


def build_request(config: GroupConfig, gpu_ids: dict[str, str] | None = None) -> ContainerGroupCreationRequest:
    """The creation request. `gpu_ids` maps GPU class names to SaladCloud ids; without it the names
    are kept (the example files), and `create` resolves them."""
    gpu_classes = [gpu_ids[name] for name in config.gpu_classes] if gpu_ids is not None else list(config.gpu_classes)
    env = {"PORT": str(config.port), "COG_IPV6_MODE": "auto", **(QUEUE_ENV if config.queue else {}), **config.env}
    container = ContainerConfiguration(
        image=config.image,
        resources=CreateContainerResourceRequirements(
            cpu=config.cpu,
            memory=config.memory_mb,
            gpu_classes=gpu_classes,
            storage_amount=config.storage_gb * 1024**3,
        ),
        environment_variables=env,
        **({"command": list(config.command)} if config.command is not None else {}),
    )
    port_args = ["--port", str(config.port)]
    ready = ContainerGroupProbeExec(command=[*config.probe, *port_args])
    alive = ContainerGroupProbeExec(command=[*config.probe, "--liveness", *port_args])
    # Salad allows at most 20 failures: spread the startup allowance over 20 periods (>= 10 s).
    period = max(10, -(-config.startup_seconds // 20))
    queue = {} if not config.queue else {
        "queue_connection": ContainerGroupQueueConnection(path=QUEUE_PATH, port=config.port, queue_name=config.queue),
        "queue_autoscaler": QueueBasedAutoscalerConfiguration(**QUEUE_AUTOSCALER),
    }
    networking = {} if config.queue else {"networking": CreateContainerGroupNetworking(
        auth=False,
        port=config.port,
        protocol=ContainerNetworkingProtocol.HTTP,
        single_connection_limit=True,
        load_balancer=TheContainerGroupNetworkingLoadBalancer.LEASTNUMBEROFCONNECTIONS,
    )}
    return ContainerGroupCreationRequest(
        name=config.name,
        display_name=config.name,
        autostart_policy=True,
        replicas=config.replicas,
        restart_policy=ContainerRestartPolicy.ALWAYS,
        container=container,
        **networking,
        **queue,
        startup_probe=ContainerGroupStartupProbe(
            exec_=ready,
            initial_delay_seconds=0,
            period_seconds=period,
            timeout_seconds=5,
            success_threshold=1,
            failure_threshold=-(-config.startup_seconds // period),
        ),
        readiness_probe=ContainerGroupReadinessProbe(
            exec_=ready, initial_delay_seconds=0, period_seconds=5, timeout_seconds=5, success_threshold=1, failure_threshold=1
        ),
        liveness_probe=ContainerGroupLivenessProbe(
            exec_=alive, initial_delay_seconds=0, period_seconds=30, timeout_seconds=5, success_threshold=1, failure_threshold=3
        ),
    )


def to_json(request: ContainerGroupCreationRequest) -> dict:
    """The request body SaladCloud's API takes (the SDK's own field mapping)."""
    return request._map()


def from_json(body: dict) -> ContainerGroupCreationRequest:
    return ContainerGroupCreationRequest._unmap(body)


GPU_24GB = ("RTX 4090 (24 GB)", "RTX 3090 Ti (24 GB)", "RTX 3090 (24 GB)")
GPU_12GB_UP = ("RTX 4070 (12 GB)", "RTX 3080 Ti (12 GB)", "RTX 3060 (12 GB)", *GPU_24GB)

def our_image(name: str, image: str, gpu_classes: tuple[str, ...] = GPU_12GB_UP, **resources) -> GroupConfig:
    """One of this project's images, started through its own copy of the front door."""
    return GroupConfig(
        name=name,
        image=f"ghcr.io/your-org/{image}:0.1.0",
        gpu_classes=gpu_classes,
        command=tuple(OUR_IMAGE_COMMAND),
        probe=tuple(OUR_IMAGE_PROBE),
        **resources,
    )


EXAMPLES = {
    "whisper-large-v3": our_image("whisper-large-v3", "saladcog-whisper"),
    "whisper-large-v3-turbo": our_image("whisper-large-v3-turbo", "saladcog-whisper-turbo", memory_mb=12288),
    "distil-whisper": our_image("distil-whisper", "saladcog-distil-whisper", memory_mb=12288),
    # Whisper large-v3-turbo + pyannote: 16 GB of RAM for torch, pyannote and the CUDA context;
    # a 4-hour file's waveform is mapped from disk (0.9 GB), not held.
    "whisper-diarize": our_image("whisper-diarize", "saladcog-whisper-diarize"),
    "openvoice": our_image("openvoice", "saladcog-openvoice", memory_mb=12288),
    "metavoice": our_image("metavoice", "saladcog-metavoice", GPU_24GB, memory_mb=24576),
    # cog-parakeet.yaml: 2.4 GB of fp32 weights, loaded by onnxruntime into host memory first.
    "parakeet": our_image("parakeet", "saladcog-parakeet", memory_mb=12288),
    # The Whisper image with OpenAI's audio API in front of Cog's (docs/openai.md).
    "whisper-large-v3-openai": our_image("whisper-large-v3-openai", "saladcog-whisper",
                                         env={"COG_IPV6_MODE": "openai"}),
    # A batch node (docs/worker.md): the Whisper image with the SQS/S3 worker beside its server.
    "whisper-worker-node": our_image("whisper-worker-node", "saladcog-whisper", env={
        "SALADCOG_SQS_WORKER": "1",
        "SALADCOG_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/talks",
        "SALADCOG_RESULTS_URL": "s3://your-bucket/results/",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "your-access-key-id",
        "AWS_SECRET_ACCESS_KEY": "your-secret-access-key",
        "SALADCOG_MIN_SPEED": "2",  # well below a healthy node: set it from your own measured speeds
    }),
    # Job-queue groups (docs/queue.md): one per image family, scaled from zero with the queue.
    "whisper-large-v3-queue": our_image("whisper-large-v3-queue", "saladcog-whisper", queue="transcripts",
                                        replicas=1),
    "openvoice-queue": our_image("openvoice-queue", "saladcog-openvoice", memory_mb=12288, queue="speech",
                                 replicas=1, env={"SALADCOG_QUEUE_STORAGE": "s3://your-bucket/openvoice-outputs/"}),
    "metavoice-queue": our_image("metavoice-queue", "saladcog-metavoice", GPU_24GB, memory_mb=24576,
                                 queue="voices", replicas=1,
                                 env={"SALADCOG_QUEUE_STORAGE": "s3://your-bucket/metavoice-outputs/"}),
    # Any Cog image rebuilt with wrapper/Dockerfile: its own ENTRYPOINT already is the front door.
    "wrapped-whisper": GroupConfig(
        name="wrapped-whisper",
        image="ghcr.io/your-org/whisper-ipv6:latest",
        gpu_classes=GPU_12GB_UP,
        command=None,
        probe=tuple(WRAPPED_PROBE),
    ),
}


def unmodified_example(image: str = "r8.im/openai/whisper") -> GroupConfig:
    """Any Cog image as published, with the entrypoint and the probe passed inline."""
    return GroupConfig(
        name="unmodified-cog-image",
        image=image,
        gpu_classes=GPU_12GB_UP,
        command=tuple(unmodified_command()),
        probe=tuple(unmodified_probe()),
    )


def write_examples(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    configs = {**EXAMPLES, "unmodified-cog-image": unmodified_example()}
    paths = []
    for name, config in configs.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(to_json(build_request(config)), indent=2) + "\n")
        paths.append(path)
    return paths


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def resolve_gpu_classes(body: dict, available: dict[str, str]) -> dict:
    """Replace GPU class names by ids (`available`: name → id); ids pass through."""
    wanted = body["container"]["resources"].get("gpu_classes", [])
    unknown = [g for g in wanted if not UUID.match(g) and g not in available]
    if unknown:
        raise ValueError(f"unknown GPU classes {unknown}; SaladCloud lists: {sorted(available)}")
    resources = {**body["container"]["resources"], "gpu_classes": [g if UUID.match(g) else available[g] for g in wanted]}
    return {**body, "container": {**body["container"], "resources": resources}}


def with_queue(body: dict, queue: str) -> dict:
    """Any example turned into a job-queue group taking jobs from `queue` (as build_request makes
    them): the worker and the queue route on, no gateway, scaled from zero with the queue."""
    port = int(body["container"]["environment_variables"].get("PORT", 5000))
    env = {**body["container"]["environment_variables"], **QUEUE_ENV}
    autoscaler = body.get("queue_autoscaler") or QUEUE_AUTOSCALER
    changed = {k: v for k, v in body.items() if k != "networking"}
    return {**changed, "container": {**body["container"], "environment_variables": env},
            "queue_connection": {"path": QUEUE_PATH, "port": port, "queue_name": queue},
            "queue_autoscaler": autoscaler, "replicas": min(body["replicas"], autoscaler["max_replicas"])}


def create(body: dict, organization: str, project: str, api_key: str):
    """Create the container group on SaladCloud (network) and return the SDK's ContainerGroup."""
    sdk = SaladCloudSdk(api_key=api_key)
    classes = sdk.organization_data.list_gpu_classes(organization_name=organization)
    body = resolve_gpu_classes(body, {c.name: c.id_ for c in classes.items})
    return sdk.container_groups.create_container_group(
        request_body=from_json(body), organization_name=organization, project_name=project
    )


def cmd_create(args: argparse.Namespace) -> int:
    api_key = os.environ.get("SALAD_API_KEY")
    if not api_key:
        print("salad create: set SALAD_API_KEY to your SaladCloud API key", file=sys.stderr)
        return 2
    body = json.loads(Path(args.config).read_text())
    if args.image:
        body["container"]["image"] = args.image
    if args.name:
        body["name"] = body["display_name"] = args.name
    if args.front_door:
        body["container"]["environment_variables"]["COG_IPV6_MODE"] = args.front_door
    if args.queue:
        body = with_queue(body, args.queue)
    group = create(body, args.organization, args.project, api_key)
    print(f"created container group {group.name} ({group.id_})")
    return 0


def cmd_write(args: argparse.Namespace) -> int:
    for path in write_examples(Path(args.directory)):
        print(path)
    return 0


def add_subcommand(sub) -> None:
    """Hook for saladcog.cli: `saladcog salad {write,create} ...`."""
    salad = sub.add_parser("salad", help="SaladCloud container groups for Cog images")
    actions = salad.add_subparsers(dest="salad_command", required=True)

    write = actions.add_parser("write", help="write the example container-group configurations")
    write.add_argument("directory", nargs="?", default=str(REPO_ROOT / "examples" / "salad"))
    write.set_defaults(func=cmd_write)

    make = actions.add_parser("create", help="create a container group (SALAD_API_KEY in the environment)")
    make.add_argument("config", help="a JSON file from examples/salad/")
    make.add_argument("--organization", required=True)
    make.add_argument("--project", required=True)
    make.add_argument("--image", help="replace the configuration's image")
    make.add_argument("--name", help="replace the container group's name")
    make.add_argument("--front-door", choices=["auto", "bind", "relay", "openai"],
                      help="ipv6_entrypoint.sh's mode (COG_IPV6_MODE); openai adds OpenAI's audio API")
    make.add_argument("--queue", help="take jobs from this SaladCloud job queue (docs/queue.md) instead of the gateway")
    make.set_defaults(func=cmd_create)
