"""One writer per store: the exclusive lease a process holds while it writes a store.

Two processes writing one store would each take the other's in-flight candidates for
their own and write rows the other never finishes, so every writer (a search, new or
resumed; a retrain) first takes the store's lease, and a second writer is refused with a
message naming the holder. Readers (``top``, ``show``, ``plot``, notebooks) never look at
the lease: they are never blocked and never create a file.

The lease is an advisory lock (``flock``) on a sidecar file ``STORE.lock``, held for as
long as the store is open for writing, and a record of the holder in that file: host,
pid, the process's start time (to tell a reused pid from the holder) and when the lease
was taken. A holder that dies, SIGKILL included, loses the lock with its last file
descriptor, so a resume right after a crash is accepted at once. Where the file system
does not support ``flock`` at all (the call fails), the record alone decides: a holder on
this host whose process is gone is stale and taken over; a live one, or one on another
host (which cannot be checked from here), refuses the lease. A clean release empties the
record. The sidecar file itself is left in place: removing it would let a process that
opened it a moment before lock a file nobody else sees.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: only the record guards the store
    fcntl = None

__all__ = ["LeaseError", "WriterLease", "lock_path"]


class LeaseError(RuntimeError):
    """Another process holds the store's lease; ``holder`` is its record (may be {})."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


def lock_path(store_path) -> Path:
    """The lease's sidecar file of a store: ``STORE.lock``."""
    return Path(f"{store_path}.lock")


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat[stat.rfind(")") + 2:].split()[19]


def _alive(holder: dict) -> bool | None:
    """Whether the holder's process runs: True, False, or None when it cannot be told
    (another host)."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    start = holder.get("proc_start")
    return start is None or _process_start(pid) in (None, start)


def describe(holder: dict) -> str:
    """``pid 123 on host h since 2025-01-01 12:00:00`` (or what the record has of it)."""
    if not holder:
        return "another process (it left no record)"
    since = holder.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) \
        if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{when}"


class WriterLease:
    """The lease of the store at ``store_path``, taken on construction (or
    :class:`LeaseError`), held until :meth:`release` or the process ends."""

    def __init__(self, store_path):
        self.path = lock_path(store_path)
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(),
                       "proc_start": _process_start(os.getpid()), "since": time.time()}
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._take()
            self._write(json.dumps(self.holder, sort_keys=True).encode())
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

    def _take(self) -> None:
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                holder = self._read()
                gone = " (that process has exited; a process it started still holds the " \
                       "lock)" if _alive(holder) is False else ""
                raise LeaseError(self._refusal(holder) + gone, holder) from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
        # No flock here: the record decides.
        holder = self._read()
        if holder and _alive(holder) is not False:
            raise LeaseError(self._refusal(holder) + (
                "; this file system has no working flock, so a holder on another host "
                f"cannot be checked: if it is gone, delete {self.path}"
                if _alive(holder) is None else ""), holder)

    def _refusal(self, holder: dict) -> str:
        store = str(self.path)[:-len(".lock")]
        return (f"store {store} is being written by {describe(holder)} (lease {self.path}); "
                "a store has one writer at a time")

    def _read(self) -> dict:
        try:
            data = os.pread(self._fd, 4096, 0)
            holder = json.loads(data) if data.strip() else {}
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _write(self, data: bytes) -> None:
        os.ftruncate(self._fd, 0)
        if data:
            os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Empty the record and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the lock still goes with the descriptor
        finally:
            os.close(fd)
