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


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write to a temporary file beside `path`, then rename it into place: readers never see half a file. The file
    gets the permissions a plain open() would give (mkstemp's are 0600), or keeps those of the file it replaces."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_leftover_temporaries(path: str | Path) -> list[Path]:
    """Temporary files of atomic_write for `path` left by a process killed while writing (a kill cannot be caught)."""
    path = Path(path)
    leftovers = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def nearest_existing(path: Path) -> Path:
    """`path` itself, or its closest parent that exists (a folder a run will create may not exist yet)."""
    return next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())


def ensure_writable_dir(path: str | Path, flag: str) -> Path:
    """Check, before slow work, that `path` can be written: a file is tried in it, or in its nearest existing
    parent when it does not exist yet (nothing is created for a run that may still fail on its input)."""
    path = Path(path)
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise BenLabError(f"{flag} {path}: {existing} is a file, not a folder; pick a folder you can write to")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise BenLabError(f"{flag} {path}: cannot write there ({error.strerror}); pick a folder you can write to") from None
    return path


def cpu_cores(cpuinfo: str | None = None) -> int:
    """Physical cores this process may run on, for llama.cpp's decoding threads: one per core is fastest, and
    llama-cpp-python's default (half the logical CPUs, assuming two per core) gives a 2-core machine one thread
    (measured here: decoding 1.4x slower)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    cores, cpu, package = set(), None, None
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            cpu, package = int(value), None
        elif key == "physical id":
            package = value
        elif key == "core id" and cpu in allowed:
            cores.add((package, value))
    return len(cores) or len(allowed)


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
