"""Where a command's time goes: named parts, each timed in wall-clock and CPU seconds.

    stopwatch = Stopwatch()
    with stopwatch.part("graph"):
        ...
    stopwatch.report()  # {"seconds": total, "cpu_seconds": total, "parts": {"graph": {...}}}

CPU seconds (``time.process_time``: this process, all its threads) say how much work a part
did; on a loaded machine they vary less than wall seconds. A part entered again adds up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    def __init__(self) -> None:
        self._started = (time.perf_counter(), time.process_time())
        self._parts: dict[str, list[float]] = {}  # name -> [wall seconds, CPU seconds]

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            spent = self._parts.setdefault(name, [0.0, 0.0])
            spent[0] += time.perf_counter() - wall
            spent[1] += time.process_time() - cpu

    def seconds(self, name: str) -> float:
        return self._parts[name][0]

    def largest(self) -> str:
        """The part with the most wall seconds."""
        return max(self._parts, key=self.seconds)

    def report(self) -> dict:
        """Seconds since the stopwatch started and per part, in the order the parts first ran."""
        return {
            "seconds": time.perf_counter() - self._started[0],
            "cpu_seconds": time.process_time() - self._started[1],
            "parts": {name: {"seconds": wall, "cpu_seconds": cpu} for name, (wall, cpu) in self._parts.items()},
        }
