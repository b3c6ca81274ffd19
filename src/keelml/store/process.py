"""Whether a process recorded by pid and host is still running."""

from __future__ import annotations

import os
import socket


def pid_alive(pid: int | None, host: str | None) -> bool:
    """False only when `pid` names no running process on this machine.

    A process on another host (or with no pid recorded) cannot be checked: it may still run.
    """
    if pid is None or host != socket.gethostname():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True
