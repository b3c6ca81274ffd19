"""Decide whether a file is read whole or in chunks, from its size and the memory this process may use."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CHUNK_ROWS = 200_000
WHOLE_FILE_FACTOR = 8
"""Reading a CSV file whole and checking it holds up to about this many times its size (bench/stream.py)."""


def memory_budget() -> int | None:
    """Bytes this process may still take: the least of the memory available on the machine, the
    cgroup's memory limit and the address-space limit (RLIMIT_AS); None when none is known."""
    limits = [v for v in (_available(), _cgroup_room(), _address_space_room()) if v is not None]
    return min(limits) if limits else None


def auto_chunk_rows(location: str, requested: int | None) -> int:
    """Lines per chunk for reading ``location`` (0: read it whole).

    ``requested`` (a ``--chunk-rows`` option) wins; otherwise a local file goes in chunks of
    ``DEFAULT_CHUNK_ROWS`` when ``WHOLE_FILE_FACTOR`` times its size exceeds :func:`memory_budget`.
    """
    if requested is not None:
        return requested
    if "://" in location or not Path(location).is_file():
        return 0
    budget = memory_budget()
    size = Path(location).stat().st_size
    return DEFAULT_CHUNK_ROWS if budget is not None and size * WHOLE_FILE_FACTOR > budget else 0


def _available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii").strip()
        return None if limit == "max" else max(int(limit) - int(used), 0)
    except (OSError, ValueError):
        return None


def _address_space_room() -> int | None:
    try:
        import resource  # Unix only: elsewhere the ImportError below means no known limit

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[0])
        return max(soft - pages * os.sysconf("SC_PAGE_SIZE"), 0)
    except (ImportError, OSError, ValueError, IndexError):
        return None
