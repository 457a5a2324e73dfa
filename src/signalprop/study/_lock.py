"""One writer per study folder: an operating-system lock held for the driver's life.

Two drivers appending to one ``results.jsonl`` record every run twice, and the
report then counts twice the seeds. :func:`writer_lock` takes an exclusive
``flock`` on ``<out>/.signalprop.lock`` before anything is written and holds it
until the study ends; a second driver is refused at once, told which process
holds the folder. The lock belongs to the open file, so the kernel releases it
when its driver dies, however it dies: a lock left by a killed driver is simply
taken over (its file still names the dead driver until the new one writes itself
in). The file is removed when the study ends.

``flock`` is advisory and local: it keeps apart drivers on one machine (or on a
file system whose locks are shared, as most local and many network ones are).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK", "StudyLockedError", "writer_lock"]

#: The lock file in a study folder.
LOCK = ".signalprop.lock"


class StudyLockedError(RuntimeError):
    """Another driver is writing the study folder.

    Examples:
        ```python
        from signalprop.study import StudyLockedError, load_spec, run_study

        try:
            run_study(load_spec('quick'), 'runs/quick')
        except StudyLockedError as error:   # another driver is writing runs/quick
            print(error)
        ```
    """


def _holder(fd: int) -> str:
    """Who the lock file says holds it (pid, host, since when)."""
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not written its name yet"


@contextlib.contextmanager
def writer_lock(directory: str | Path) -> Iterator[None]:
    """Hold ``directory``'s study lock for the ``with`` block.

    Raises:
        StudyLockedError: When another driver holds it, with that driver's pid and host.
    """
    import fcntl  # POSIX only; imported here so that the package imports everywhere

    path = Path(directory) / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StudyLockedError(
                f"{directory} is being written by another study driver ({holder}): let it "
                "finish or stop it, then run the same command to resume"
            ) from None
        # The file may have been removed by the driver that held it between our open and
        # our lock: then this lock guards nothing, and the next open makes a new file.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still locked: a driver that opened it now retries (above)
        os.close(fd)
