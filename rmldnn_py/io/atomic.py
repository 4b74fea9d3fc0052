"""Atomic file replacement, temp-file bookkeeping and one-line write errors.

A file is written under a temporary name in its own directory and renamed when complete
(SPEC §2.4): a crash or an error while writing never leaves a half-written checkpoint or HDF5
file and never damages an existing file of the same name.

Temporary names. :func:`atomic_path` names the temporary file
``.<name>.<host>-<pid>.<token>.tmp`` (``.model_checkpoint_3.pt.1a2b3c4d-4711.k3x9q2mz.tmp``):
``<host>`` is 8 hex digits of a hash of the host name, ``<pid>`` the writing process. So
:func:`clean_stale_temps` can remove the temporary files a killed run left behind
(``kill -9``, power loss) without touching those of a run still writing on this host or on
another host sharing the file system. The file is created with mode ``0o666`` minus the umask,
like ``open()`` (``0644`` under umask 022), not ``mkstemp``'s ``0600``.

In-flight registry. Every temporary file that exists right now in this process is listed in a
process-wide set; :func:`remove_in_flight` deletes them and may be called from a signal handler
(SIGTERM) right before the process exits.

Write errors. :func:`write_error` turns an ``OSError`` or the ``RuntimeError`` that
``torch.save`` raises for a failed write (``[enforce fail at inline_container.cc:...]``,
``file write failed``) into one :class:`~rmldnn_py.errors.RmldnnError` line naming the file and
the reason (``no space left on device``, ``file size limit exceeded``, ...);
:func:`atomic_torch_save` is ``torch.save`` with all of the above.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import resource
import secrets
import socket
import time
from typing import Any, Iterator, Optional, Type

from ..errors import RmldnnError

_IN_FLIGHT: set[str] = set()

_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]
# .<name>.<host>-<pid>.<token>.tmp
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.(?P<token>[a-z0-9]{8})\.tmp$")
# names of earlier versions (tempfile.mkstemp: .<name>.<8 random chars>.tmp), only for the files
# this program writes; their writer is unknown, so they are removed only when old
_LEGACY_RE = re.compile(r"^\.(?P<name>(model_checkpoint_\d+\.pt|output_\d+\.h5|[^/]+\.h5))"
                        r"\.[A-Za-z0-9_]{8}\.tmp$")
LEGACY_AGE_S = 3600.0


def temp_name(path: str) -> str:
    """A fresh temporary path next to ``path`` (``.<name>.<host>-<pid>.<token>.tmp``)."""
    directory = os.path.dirname(os.path.abspath(path))
    token = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    return os.path.join(directory, f".{os.path.basename(path)}.{_HOST}-{os.getpid()}.{token}.tmp")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error
    delete it (see the module docstring for its name and mode).

    The parent directory of ``path`` is created if missing. The temporary file exists (empty)
    when the body starts; it is listed for :func:`remove_in_flight` until renamed or deleted.

    Raises:
        OSError: the directory or the temporary file cannot be created, or the rename fails
            (use :func:`write_error` to turn it into a one-line message).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    for _ in range(100):
        tmp = temp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 36**8 names
        raise FileExistsError(errno.EEXIST, "cannot create a temporary file", path)
    os.close(fd)
    _IN_FLIGHT.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    finally:
        _IN_FLIGHT.discard(tmp)


def in_flight() -> list[str]:
    """The temporary files this process is writing right now."""
    return sorted(_IN_FLIGHT)


def remove_in_flight() -> None:
    """Delete every temporary file this process is writing (safe to call from a signal handler
    right before exiting: only ``os.remove`` calls, every error ignored)."""
    for tmp in list(_IN_FLIGHT):
        try:
            os.remove(tmp)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def clean_stale_temps(directory: str) -> list[str]:
    """Remove the temporary files of :func:`atomic_path` in ``directory`` whose writer is gone.

    A file ``.<name>.<host>-<pid>.<token>.tmp`` is stale when ``<host>`` is this host and
    process ``<pid>`` no longer exists (or is this process but the file is not one it is
    writing). Files of other hosts, of live processes and every other file are left alone.
    Temporary files of earlier versions (``.model_checkpoint_<n>.pt.<8 chars>.tmp``,
    ``.output_<n>.h5.<8 chars>.tmp``) carry no process id; they are removed when not modified
    for :data:`LEGACY_AGE_S` seconds. A missing or unreadable directory is not an error.

    Returns:
        The removed paths.
    """
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    me = os.getpid()
    now = time.time()
    for name in names:
        full = os.path.join(directory, name)
        m = _TEMP_RE.match(name)
        stale = False
        if m:
            if m.group("host") != _HOST:
                continue
            pid = int(m.group("pid"))
            stale = (full not in _IN_FLIGHT) if pid == me else not _alive(pid)
        elif _LEGACY_RE.match(name):
            with contextlib.suppress(OSError):
                stale = now - os.lstat(full).st_mtime > LEGACY_AGE_S
        if stale and os.path.isfile(full) and not os.path.islink(full):
            try:
                os.remove(full)
                removed.append(full)
            except OSError:
                pass
    return removed


# --------------------------------------------------------------------------------------------
# write errors
# --------------------------------------------------------------------------------------------

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EFBIG: "file size limit exceeded (ulimit -f)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "input/output error",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a component of the path is not a directory",
    errno.EISDIR: "is a directory",
}
_TORCH_WRITE_FAILURES = ("inline_container.cc", "file write failed", "unexpected pos",
                         "No space left", "PytorchStreamWriter", "File too large")


def is_write_error(exc: BaseException) -> bool:
    """True for an ``OSError`` or a ``RuntimeError`` of ``torch.save`` / h5py reporting a failed
    write (disk full, file size limit, I/O error)."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILURES)


def _probe_reason(path: str) -> str:
    """Why a write into the directory of ``path`` fails, when the exception does not say."""
    directory = os.path.dirname(os.path.abspath(path))
    with contextlib.suppress(OSError):
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize < 1 << 20:
            return _REASONS[errno.ENOSPC]
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        return f"{_REASONS[errno.EFBIG]} or no space left on device"
    return "write failed (no space left on device or an I/O error)"


def reason_of(exc: BaseException, path: str = "", cause: Optional[BaseException] = None) -> str:
    """The short reason of a failed write (``"no space left on device"``).

    Args:
        exc: the exception raised by the writing code.
        path: the file written (used to probe the disk when ``exc`` does not say).
        cause: an ``OSError`` recorded by the file object the writer used (see
            :class:`GuardedFile`), which is more precise than ``exc``.
    """
    for e in (cause, exc, getattr(exc, "__cause__", None), getattr(exc, "__context__", None)):
        if isinstance(e, OSError):
            if e.errno in _REASONS:
                return _REASONS[e.errno]
            if e.strerror:
                return e.strerror[:1].lower() + e.strerror[1:]
    text = str(exc)
    m = re.search(r"errno = (\d+)", text)          # HDF5: "... errno = 28, error message = ..."
    if m and int(m.group(1)) in _REASONS:
        return _REASONS[int(m.group(1))]
    if "No space left" in text:
        return _REASONS[errno.ENOSPC]
    if "File too large" in text:
        return _REASONS[errno.EFBIG]
    if isinstance(exc, RuntimeError) and is_write_error(exc):
        return _probe_reason(path)
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return first[:200]


def write_error(path: str, exc: BaseException, what: str = "file",
                error_cls: Type[RmldnnError] = RmldnnError,
                cause: Optional[BaseException] = None) -> RmldnnError:
    """One-line error for a failed write of ``path``:
    ``<path>: cannot write <what>: no space left on device``.

    Args:
        path: the final file name (as the user gave it).
        exc: the ``OSError`` / ``RuntimeError`` raised.
        what: ``"checkpoint"``, ``"predictions"``, ``"log file"``, ...
        error_cls: the :class:`RmldnnError` subclass to return (e.g. ``CheckpointError``).
        cause: the ``OSError`` recorded by a :class:`GuardedFile`, if any.
    """
    return error_cls(f"{path}: cannot write {what}: {reason_of(exc, path, cause)}")


class GuardedFile:
    """A binary, seekable file object over a file descriptor that records the first
    ``OSError`` of a write (``.error``), for ``torch.save(obj, f)`` and ``h5py.File(f)``.

    ``fail_soft=False`` (``torch.save``): the error is raised to the caller (torch turns it into a
    ``RuntimeError``; :func:`write_error` with ``cause=f.error`` names the real reason).

    ``fail_soft=True`` (HDF5): after the first error, writes succeed in memory: they are kept in
    an overlay and reads see them, so the library writing the file finishes normally (HDF5 does
    not survive write errors: it prints errors from destructors and may crash at close). Only
    what is written after the error is kept in memory (the rest of the current dataset and the
    closing metadata); the caller must then delete the file and report ``.error``.
    """

    def __init__(self, path: str, fail_soft: bool = False) -> None:
        self.path = path
        self.fail_soft = fail_soft
        self.error: Optional[OSError] = None
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        self._pos = 0
        self._overlay: list[tuple[int, bytes]] = []
        self._size: Optional[int] = None     # logical size once in fail-soft mode

    # ------------------------------------------------------------------ file protocol
    def _disk_size(self) -> int:
        return os.fstat(self._fd).st_size

    def _logical_size(self) -> int:
        if self._size is None:
            return self._disk_size()
        return self._size

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = self._logical_size() + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self._logical_size()
        if size is None or size < 0:
            size = max(0, end - self._pos)
        size = max(0, min(size, end - self._pos))
        data = bytearray(os.pread(self._fd, size, self._pos)) if size else bytearray()
        if len(data) < size:
            data += bytes(size - len(data))
        lo, hi = self._pos, self._pos + size
        for off, chunk in self._overlay:      # later writes win
            a, b = max(lo, off), min(hi, off + len(chunk))
            if a < b:
                data[a - lo:b - lo] = chunk[a - off:b - off]
        self._pos += size
        return bytes(data)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        if self.error is None:
            try:
                pos = self._pos
                while view:
                    n = os.pwrite(self._fd, view, pos)
                    if n == 0:
                        raise OSError(errno.EIO, "write returned 0 bytes")
                    pos += n
                    view = view[n:]
                self._pos = pos
                return total
            except OSError as exc:
                self.error = exc
                if not self.fail_soft:
                    raise
                self._size = max(self._disk_size(), pos)
                view = memoryview(data).cast("B")      # keep the whole failed write
        if not self.fail_soft:
            raise self.error
        self._overlay.append((self._pos, bytes(view)))
        self._pos += total
        self._size = max(self._logical_size(), self._pos)
        return total

    def truncate(self, size: Optional[int] = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
                return size
            except OSError as exc:
                self.error = exc
                if not self.fail_soft:
                    raise
        if not self.fail_soft:
            raise self.error
        self._size = size
        return size

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._overlay = []

    def __enter__(self) -> "GuardedFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def atomic_torch_save(obj: Any, path: str, what: str = "checkpoint",
                      error_cls: Type[RmldnnError] = RmldnnError) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_path`: the file appears complete or not at
    all, with the umask's permissions.

    Raises:
        error_cls: one line ``<path>: cannot write <what>: <reason>`` for any write failure
            (disk full, file size limit, permissions, read-only file system); the temporary file
            is removed and an existing ``path`` is left unchanged.
    """
    import torch

    f: Optional[GuardedFile] = None
    try:
        with atomic_path(path) as tmp:
            with GuardedFile(tmp) as f:
                torch.save(obj, f)
    except (OSError, RuntimeError) as exc:
        if not is_write_error(exc) and (f is None or f.error is None):
            raise
        raise write_error(path, exc, what, error_cls, cause=f.error if f else None) from None
