"""What every entry point shares: the one error type for expected failures, atomic writes, and main()."""

from __future__ import annotations

import errno
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path


class BenLabError(Exception):
    """An expected failure (bad input, missing model, lab down): printed as one line, exit code 2."""


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write to a temporary file beside `path`, then rename it into place: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def interrupt_on_terminate(signum, frame) -> None:
    raise KeyboardInterrupt("terminated")


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run an entry point: BenLabError and a full disk become one line on stderr and exit code 2; Ctrl-C exits 130.
    A kill (SIGTERM) is handled as Ctrl-C, so the same cleanup runs: a started lab stops, training saves a checkpoint."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt_on_terminate) if in_main_thread else None
    try:
        return main(argv)
    except BenLabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"interrupted{': ' + str(interrupt) if str(interrupt) else ''}", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        print(f"error: the disk is full{f' (writing {error.filename})' if error.filename else ''}; free some space "
              "(`df -h` shows where) and run the same command again", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
