"""Where a device keeps its enrollment, sequence floor, last key bundle and replay window.

:class:`FileStorage` writes one file per key, atomically (write, fsync, rename, fsync the
folder), readable by the owner only, and holds an exclusive lock on the folder while a client
runs, so a second process on the same storage is refused (``ERR_IDENTITY_IN_USE``).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from typing import IO, Protocol

from .errors import SmqttError

_KEY = re.compile(r"^[A-Za-z0-9:._-]{1,200}$")


class Storage(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStorage:
    """In memory (tests): nothing survives the process."""

    def __init__(self) -> None:
        self._items: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._items.get(key)

    def set(self, key: str, value: str) -> None:
        self._items[key] = value

    def delete(self, key: str) -> None:
        self._items.pop(key, None)


class FileStorage:
    """A folder of small files (mode 0600 in a 0700 folder).

    Example::

        storage = FileStorage("/var/lib/thermostat/smqtt")
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self._lock_file: IO[bytes] | None = None
        self._mutex = threading.Lock()

    def _file(self, key: str) -> str:
        if not _KEY.match(key):
            raise ValueError(f"invalid storage key {key!r}")
        # ':' is not welcome in every file system
        return os.path.join(self.path, key.replace(":", "~") + ".json")

    def get(self, key: str) -> str | None:
        try:
            with open(self._file(key), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def set(self, key: str, value: str) -> None:
        target = self._file(key)
        with self._mutex:
            temporary = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, value.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, target)
            folder = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._file(key))
        except FileNotFoundError:
            pass

    def lock(self) -> None:
        """Takes this storage for this process; ``ERR_IDENTITY_IN_USE`` when another holds it."""
        if self._lock_file is not None:
            return
        handle = open(os.path.join(self.path, ".lock"), "ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SmqttError("ERR_IDENTITY_IN_USE", f"another process runs the identity in {self.path}") from None
        self._lock_file = handle

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
