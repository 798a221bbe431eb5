"""Doorbells: a wake-up across processes for waiters that would otherwise only poll a SQLite file.

The embedded default has no server to push anything: its broker is a table that consumers poll,
and a finished job is a row that the API's long-polls look for. Each of the three hops a job
makes (API → worker → post-processing → API) waited up to a polling interval (20 ms), half of
it on average, and polling faster cost the CPU that routing needed.

A doorbell is a folder of UNIX datagram sockets, one per listener, grouped by topic (a broker
queue, say). A writer, once its transaction has committed, sends one byte to every listener of
the topic it wrote to (``ring``); a listener waits on its socket with its polling interval as
the timeout. Only the listeners of that topic wake: every wake-up is a process switch, and on
two cores waking the consumers of other queues made each publish take milliseconds longer.

A ring is only ever a hint: one that is lost (a full socket buffer, a listener that is just
starting) costs one polling interval, as before, never a message. Where UNIX sockets are
missing (Windows), nothing rings and the waiters poll as they did.

The folder is in the temporary directory, named by a hash of what the bell is for (the SQLite
file and a purpose), so every process that opens the same file finds the same bell and socket
paths stay short. A listener's socket lives in the folder; a topic's entry is a symbolic link
to it in the topic's subfolder. A listener removes its socket, its entries and the folders
they leave empty when it closes (at the latest when its process exits); an entry whose process
was killed refuses the ring (or dangles) and is removed by the ring that finds it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import select
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shared.logs import get_logger

log = get_logger(__name__)

_SUFFIX = ".sock"
T = TypeVar("T")


_sender: socket.socket | None = None
_sender_lock = threading.Lock()


def _sending_socket() -> socket.socket:
    """One unbound datagram socket per process rings every bell (sending needs no address)."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
            atexit.register(_sender.close)
        return _sender


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class Doorbell:
    """The bell for one purpose on one SQLite file (``name``: the file's path and the purpose)."""

    def __init__(self, name: str) -> None:
        user = getattr(os, "getuid", lambda: 0)()
        self.folder = Path(tempfile.gettempdir()) / f"chatq-bell-{user}-{_digest(name, 16)}"

    def topic_folder(self, topic: str) -> Path:
        return self.folder / f"t-{_digest(topic, 12)}"

    def ring(self, topic: str = "") -> None:
        """Wake every listener of ``topic`` (once the write it announces has committed)."""
        if not hasattr(socket, "AF_UNIX"):
            return
        try:
            entries = list(os.scandir(self.topic_folder(topic)))
        except FileNotFoundError:
            return  # nobody has listened to it yet
        sender = _sending_socket()
        for entry in entries:
            if not entry.name.endswith(_SUFFIX):
                continue
            try:
                sender.sendto(b"\0", entry.path)
            except BlockingIOError:
                pass  # its buffer is full of rings it has not read: it is awake already
            except ConnectionRefusedError:  # its process is gone: its socket and its entry
                with contextlib.suppress(OSError):
                    os.unlink(os.path.realpath(entry.path))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            except FileNotFoundError:  # its socket was removed: the entry dangles
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            except OSError as error:
                log.debug("doorbell_ring_failed", socket=entry.path, error=repr(error))

    def listen(self) -> BellListener | None:
        """A listener of this bell (it hears the topics it ``subscribe``s to), or ``None``
        where there are no UNIX sockets or the folder cannot be made: the caller then polls
        without one."""
        if not hasattr(socket, "AF_UNIX"):
            return None
        path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}{_SUFFIX}"
        try:
            return _made_in(self.folder, lambda: BellListener(self, path))
        except OSError as error:
            log.warning("doorbell_unavailable", folder=str(self.folder), error=repr(error))
            return None


class BellListener:
    """One waiter's socket. Rings that arrive while nobody waits are kept in its buffer, so a
    ring between a look that found nothing and the wait after it is not missed: subscribe
    before the first look."""

    def __init__(self, bell: Doorbell, path: Path) -> None:
        self.bell = bell
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._socket.bind(str(path))
        self._entries: dict[str, Path] = {}
        self._closed = False
        atexit.register(self.close)

    @property
    def topics(self) -> set[str]:
        return set(self._entries)

    def subscribe(self, topic: str = "") -> None:
        """Hear the rings of ``topic`` from now on."""
        if topic in self._entries:
            return
        folder = self.bell.topic_folder(topic)
        entry = folder / self.path.name

        def link() -> None:
            with contextlib.suppress(FileExistsError):
                entry.symlink_to(self.path)

        try:
            _made_in(folder, link)
        except OSError as error:  # this topic is polled without a bell
            log.warning("doorbell_subscribe_failed", topic=topic, error=repr(error))
            return
        self._entries[topic] = entry

    def unsubscribe(self, topic: str) -> None:
        entry = self._entries.pop(topic, None)
        if entry is not None:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            _remove_if_empty(entry.parent)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ring; whether one came. Every ring already
        received is consumed: one look answers them all."""
        ready, _, _ = select.select([self._socket], [], [], timeout)
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while True:
                self._socket.recv(64)
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for topic in list(self._entries):
            self.unsubscribe(topic)
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _remove_if_empty(self.path.parent)


def _made_in(folder: Path, make: Callable[[], T]) -> T:
    """``make()`` (a socket or an entry in ``folder``), the folder made first; once more if a
    closing listener removed the folder, empty, in between. Raises ``OSError``."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        return make()
    except FileNotFoundError:
        folder.mkdir(mode=0o700, exist_ok=True)
        return make()


def _remove_if_empty(folder: Path) -> None:
    # a listener starting meanwhile makes the folder again (``listen`` and ``subscribe`` retry)
    with contextlib.suppress(OSError):
        folder.rmdir()
