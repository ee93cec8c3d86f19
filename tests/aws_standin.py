"""S3 and SQS on loopback: moto's server mode, a real server speaking both wire protocols, for
boto3 to talk to exactly as it talks to AWS (endpoint URL and credentials from the environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx

from saladcog.serve import free_port

START_TIMEOUT_S = 60.0


class AwsStandIn:
    """`moto_server` on 127.0.0.1; `.env` is what a process needs to use it through boto3."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.log = log_dir / "moto.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> AwsStandIn:
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if not binary:
            raise RuntimeError("moto_server is missing: pip install the dev extra (moto[server])")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log.read_text()[-2000:]}")
            try:
                httpx.get(f"{self.endpoint}/moto-api/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"moto_server did not answer within {START_TIMEOUT_S} s")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, service: str):
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
        ).client(service, endpoint_url=self.endpoint)

    def environ(self) -> dict[str, str]:
        """This process's environment plus the stand-in's, for a subprocess."""
        return {**os.environ, **self.env}

    def reset(self) -> None:
        """Forget every bucket, queue and message (moto's own reset call)."""
        httpx.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()
