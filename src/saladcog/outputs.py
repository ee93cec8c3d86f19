"""Files a runner returns: each prediction's output file replaces the previous one on disk.

coglet reads a returned file (into a data URI, or an upload with --upload-url) before it starts
the next prediction, and never deletes it. A runner that names every output file with
`output_path` keeps only the latest one on disk, so a server that runs for weeks on a Salad node
does not fill it. Cog runs a synchronous run() one prediction at a time per worker, which is
what makes "the previous output has been sent" true when the next one is written.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

# The folder of the last output this process wrote; module state, because the worker process
# is what owns the files between predictions.
_last_folder: Path | None = None


def output_path(filename: str) -> Path:
    """A fresh path named `filename` in a new temporary folder; the previous one is removed."""
    global _last_folder
    if _last_folder is not None:
        shutil.rmtree(_last_folder, ignore_errors=True)
    _last_folder = Path(tempfile.mkdtemp(prefix="saladcog-output-"))
    return _last_folder / filename
