"""Fixtures shared by the client tests: real clips, a long recording, servers' logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import saladcog
from saladcog import audio
from saladcog.schema import openapi_schema
from saladcog.serve import CogServer, free_port

LIBRIVOX = Path(__file__).parent / "data" / "speech" / "librivox"
TOKEN = "test-webhook-token"
ENTRYPOINT = Path(__file__).resolve().parents[1] / "ipv6_entrypoint.sh"


def clips() -> list[Path]:
    return sorted(LIBRIVOX.glob("*.wav"))


def normalize(text: str) -> str:
    text = text.lower().replace("mr.", "mister")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def long_recording(path: Path, repeats: int) -> Path:
    """The five clips read `repeats` times in a row: a real recording of ~35 s per repeat."""
    pieces = [audio.decode(c, 16000) for c in clips()] * repeats
    audio.encode(np.concatenate(pieces), 16000, path, "wav")
    return path


def completed_ids(log_path: Path) -> list[str]:
    """Prediction ids that the Cog server's worker completed, in order, from its JSON log."""
    ids = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"Prediction worker completed"' in line:
            ids.append(json.loads(line)["fields"]["prediction_id"])
    return ids


class FrontDoorServer(CogServer):
    """A runner under the real Cog server started by ipv6_entrypoint.sh, as the images start it:
    relay mode puts coglet on 127.0.0.1 and socat on [::]:PORT, the port the gateway reaches."""

    def start(self) -> FrontDoorServer:
        self._workdir = tempfile.TemporaryDirectory(prefix="saladcog-frontdoor-")
        (self.workdir / ".cog").mkdir()
        (self.workdir / ".cog" / "openapi_schema.json").write_text(json.dumps(openapi_schema(self.runner)))
        src = str(Path(saladcog.__file__).resolve().parents[1])
        env = {
            **os.environ,
            **self.env,
            "PORT": str(self.port),
            "COG_INTERNAL_PORT": str(free_port()),
            "COG_IPV6_MODE": "relay",
            "COG_PYTHON": self.python,
            "COG_PREDICT_TYPE_STUB": self.runner,
            "PATH": f"{Path(self.python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p),
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", str(ENTRYPOINT)], cwd=self.workdir, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self
