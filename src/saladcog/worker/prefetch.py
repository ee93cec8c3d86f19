"""The prefetch bound: how many inputs a worker holds at once, and how many bytes of them are on
disk.

A fetcher takes a slot before it receives a message (so at most `max_files` messages are held:
downloading, waiting or being transcribed) and only while the bytes on disk are under
`max_bytes`. Before it writes a download it reserves the size the server declares: it waits
until that fits under `max_bytes`, or until it would be the only file on disk (an input larger
than the whole budget is still taken, alone). A download without a declared size is counted as
it arrives. So the bytes on disk stay under `max_bytes` except for one input larger than the
budget, or a download whose server declared no size.
"""

from __future__ import annotations

import threading
import time


class Budget:
    def __init__(self, max_files: int, max_bytes: int):
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.files = 0
        self.bytes = 0
        self.peak_files = 0
        self.peak_bytes = 0
        self._changed = threading.Condition()

    def _wait(self, ready, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def take_slot(self, timeout: float) -> bool:
        """Wait up to `timeout` s for room for one more input; True if taken."""
        def room() -> bool:
            if self.files < self.max_files and self.bytes < self.max_bytes:
                self.files += 1
                self.peak_files = max(self.peak_files, self.files)
                return True
            return False

        return self._wait(room, timeout)

    def reserve(self, size: int, timeout: float) -> bool:
        """Wait up to `timeout` s until `size` more bytes fit (or nothing else is on disk), then
        count them; True if counted."""
        def fits() -> bool:
            if self.bytes + size <= self.max_bytes or self.bytes == 0:
                self._add(size)
                return True
            return False

        return self._wait(fits, timeout)

    def grow(self, size: int) -> None:
        """Count bytes beyond what was reserved (a download that declared no size)."""
        with self._changed:
            self._add(size)

    def _add(self, size: int) -> None:
        self.bytes += size
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def release(self, size: int, slot: bool = True) -> None:
        """Give back `size` bytes (the file is gone) and, with `slot`, its slot."""
        with self._changed:
            self.bytes -= size
            self.files -= slot
            self._changed.notify_all()
