"""What the benchmarks measure: resident memory over time, and each step's wall time and peak memory."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field


@dataclass
class MemorySampler:
    """Samples this process's resident memory every ``interval`` seconds (to attribute peaks to stages)."""

    interval: float = 0.2
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._rss()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else 0


class TreeMemorySampler(MemorySampler):
    """Resident memory of this process plus all its descendants (worker pools, forkserver children)."""

    def _rss(self) -> int:
        import psutil

        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                pass
        return total


def step_timings(instance, run_id: str, sampler: MemorySampler) -> dict[str, dict]:
    """Per step of a finished run (from the instance's event log): seconds, peak GiB, and whether it failed."""
    steps: dict[str, dict] = {}
    starts: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            began = starts.get(event.step_key, entry.timestamp)
            steps[event.step_key] = {
                "seconds": round(entry.timestamp - began, 2),
                "peak_gb": round(sampler.peak_between(began, entry.timestamp) / 2**30, 3),
                **({"failed": True} if event.event_type_value == "STEP_FAILURE" else {}),
            }
    return steps
