"""A decoded-image cache shared by the DataLoader worker processes."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
import weakref

import numpy as np

__all__ = ["ImageCache"]

_PREFIX = "skinestimator-cache-"
_OWNER_FILE = "owner.json"
# A folder without a readable owner record may be one that another process is creating right
# now (between mkdtemp and writing the record): only older ones are taken for leftovers.
_GRACE_SECONDS = 60.0


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (the process's start time in clock ticks since boot).

    A pid is recycled by the kernel, the pair (pid, start time) is not. None where there is no
    ``/proc`` (non-Linux); raises OSError when the process does not exist.
    """
    if not os.path.exists("/proc/self/stat"):
        return None
    with open(f"/proc/{pid}/stat", "rb") as file:
        stat = file.read()
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # a zombie runs no cleanup and owns nothing any more
        raise ProcessLookupError(pid)
    return fields[19].decode()


def _host() -> str:
    """The machine and pid namespace that a pid means something in.

    A cache folder on a shared file system (NFS, a volume mounted into several containers) may
    belong to a process that this one cannot see: such folders are never judged dead.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{platform.node()}/{namespace}"


def _owner_alive(owner: dict) -> bool:
    """Whether the process that wrote ``owner`` may still be running (when unsure: yes)."""
    pid, start = int(owner["pid"]), owner.get("start")
    if owner.get("host") != _host():
        return True
    try:
        current = _start_time(pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    if current is not None and start is not None:
        return current == start
    if os.name != "posix":
        # On Windows os.kill(pid, 0) would terminate the process: keep the folder.
        return True
    try:
        os.kill(pid, 0)  # signal 0 only checks that the pid exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


def _remove_stale_caches(parent: str) -> None:
    """Remove the cache folders in ``parent`` left by dead processes (SIGKILL, a crash).

    Best effort, and safe when several processes sweep at once: a failure only leaves garbage.
    """
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        try:
            # Never follow a symlink, and leave other users' folders alone (a shared /tmp).
            if not entry.name.startswith(_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            if uid is not None and info.st_uid != uid:
                continue
            try:
                flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                fd = os.open(os.path.join(entry.path, _OWNER_FILE), flags)
                with open(fd, encoding="utf-8") as file:
                    owner = json.load(file)
                alive = _owner_alive(owner)
            except (OSError, ValueError, KeyError, TypeError):
                # No record (being created, or written by an older version): trust its age.
                alive = time.time() - info.st_mtime < _GRACE_SECONDS
            if not alive:
                # ignore_errors: another process may be removing the same folder right now.
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue


# The open caches of this process, folder -> pid of the creating process. A forked child
# inherits the dict (and the SIGTERM handler): the pid tells it which folders are its own.
_open_caches: dict[str, int] = {}
# Reentrant: the finalizer may run from a garbage collection while this thread holds the lock.
_lock = threading.RLock()
_handler_installed = False


def _on_sigterm(signum, frame) -> None:
    """Remove this process's caches, then die by SIGTERM as without the handler.

    It takes no lock: it runs in the main thread, which may hold the lock when the signal comes.
    """
    for folder, pid in list(_open_caches.items()):
        if pid == os.getpid():  # never the parent's folders from a forked DataLoader worker
            shutil.rmtree(folder, ignore_errors=True)
    # The default action, so the exit status still says "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _sync_handler() -> None:
    """Install the SIGTERM handler while caches are open, and restore the default after.

    Only over the default handler, so that a user's own handling is never replaced (their
    handler usually exits through Python, which runs the finalizers anyway), and only where
    ``signal.signal`` works: the main thread of the main interpreter. Elsewhere the handler may
    stay installed: with no cache open it only does the default action.
    """
    global _handler_installed
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if _open_caches and not _handler_installed:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
                _handler_installed = True
        elif not _open_caches and _handler_installed:
            # Unless the user replaced our handler meanwhile: theirs stays.
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _handler_installed = False
    except ValueError:  # not the main interpreter
        pass


def _remove_cache(folder: str, owner_pid: int) -> None:
    """The finalizer: forget the folder and delete it, in the process that created it only."""
    with _lock:
        _open_caches.pop(folder, None)
        _sync_handler()
    if os.getpid() == owner_pid:
        shutil.rmtree(folder, ignore_errors=True)


class ImageCache:
    """Fixed-size ``uint8`` images, decoded once and then read back for every later epoch.

    The images live in a memory-mapped file in a fresh temporary folder: the operating system's
    page cache keeps it in RAM while memory is free and pages it to disk for data sets larger
    than memory, and every DataLoader worker process (forked or spawned) maps the same file, so a
    JPEG decoded by one worker in epoch 1 is never decoded again. The folder is removed when the
    cache is closed or garbage-collected, and when the process is terminated by SIGTERM (if no
    other SIGTERM handler is set). A folder left by a killed process (SIGKILL) is removed when
    the next cache is created in the same directory: each folder records its owner (pid, and on
    Linux the process's start time, so that a recycled pid is not taken for the owner).

    Parameters
    ----------
    n_images : int
    image_shape : (height, width, 3)
    directory : str or None
        Where to put the temporary folder (default: the system temp dir).
    """

    def __init__(
        self, n_images: int, image_shape: tuple[int, int, int], *, directory: str | None = None
    ):
        self.shape = (int(n_images), *map(int, image_shape))
        parent = tempfile.gettempdir() if directory is None else directory
        _remove_stale_caches(parent)
        self.folder = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
        # The owner is the creating process, never a DataLoader worker that maps the files.
        self._owner_pid = os.getpid()
        self._finalizer = weakref.finalize(self, _remove_cache, self.folder, self._owner_pid)
        with _lock:
            _open_caches[self.folder] = self._owner_pid
            _sync_handler()
        self._write_owner()
        self._pixels = None
        self._filled = None
        # Create both files at full size up front (sparse on most file systems).
        self._open("w+")

    def _write_owner(self) -> None:
        try:
            start = _start_time(self._owner_pid)
        except OSError:
            start = None
        record = {"pid": self._owner_pid, "start": start, "host": _host()}
        # Written aside and renamed, so that a sweeping process never reads half a record.
        partial = os.path.join(self.folder, _OWNER_FILE + ".partial")
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(record, file)
        os.replace(partial, os.path.join(self.folder, _OWNER_FILE))

    def _open(self, mode: str) -> None:
        self._pixels = np.memmap(
            os.path.join(self.folder, "pixels.u8"), dtype=np.uint8, mode=mode, shape=self.shape
        )
        self._filled = np.memmap(
            os.path.join(self.folder, "filled.u8"),
            dtype=np.uint8,
            mode=mode,
            shape=(self.shape[0],),
        )

    def __getstate__(self):
        # A spawned worker re-opens the files instead of receiving a private copy of the arrays.
        state = self.__dict__.copy()
        state["_pixels"] = state["_filled"] = None
        state["_finalizer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _ensure_open(self) -> None:
        if self._pixels is None:
            self._open("r+")

    def get(self, index: int) -> np.ndarray | None:
        """The cached image, or None if it was not stored yet."""
        self._ensure_open()
        if self._filled[index]:
            return np.array(self._pixels[index])
        return None

    def put(self, index: int, image: np.ndarray) -> None:
        """Store one decoded image (pixels first, then the flag, so readers never see half)."""
        self._ensure_open()
        self._pixels[index] = image
        self._filled[index] = 1

    def close(self) -> None:
        """Delete the cache files."""
        self._pixels = self._filled = None
        if self._finalizer is not None:
            self._finalizer()
