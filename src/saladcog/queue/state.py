"""The local record of one `saladcog queue run`: which input became which job, and what came back.
It lives in the output folder, is rewritten whole (atomically) after every change, and makes a
second run submit only what has no job yet and collect only what has no result yet."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

STATE_FILE = ".saladcog-queue.json"
FINAL = ("collected", "failed")


@dataclasses.dataclass
class Entry:
    name: str  # the result files' stem, unique within the folder
    source: str  # a local path or a URL
    job_id: str | None = None
    status: str = "new"  # new | pending | running | collected | failed
    error: str | None = None


@dataclasses.dataclass
class State:
    path: Path
    queue: str
    entries: dict[str, Entry] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: Path, queue: str) -> State:
        path = out_dir / STATE_FILE
        if not path.exists():
            return cls(path, queue)
        data = json.loads(path.read_text())
        if data["queue"] != queue:
            raise ValueError(f"{out_dir} holds the results of queue {data['queue']!r}, not {queue!r}:"
                             " use another output folder")
        return cls(path, queue, {e["name"]: Entry(**e) for e in data["entries"]})

    def save(self) -> None:
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"queue": self.queue,
                                       "entries": [dataclasses.asdict(e) for e in self.entries.values()]}, indent=1))
        os.replace(scratch, self.path)

    def add(self, source: str, stem: str) -> Entry:
        """The entry for `source`, made once; a stem already taken by another source gets a suffix."""
        for entry in self.entries.values():
            if entry.source == source:
                return entry
        name, n = stem, 1
        while name in self.entries:
            n += 1
            name = f"{stem}-{n}"
        self.entries[name] = Entry(name, source)
        return self.entries[name]

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.entries.values())
