"""What every entry point shares: one-line errors, a full disk, a kill that runs the same cleanup as Ctrl-C, and
atomic writes (their permissions, and what a killed writer leaves)."""

import errno
import os
import signal
import stat
import time

from benlab import common
from benlab.common import BenLabError, run_main


def test_expected_errors_are_one_line(capsys):
    def main(argv):
        raise BenLabError("--data nope.jsonl does not exist; pass a JSONL file")

    assert run_main(main) == 2
    assert capsys.readouterr().err == "error: --data nope.jsonl does not exist; pass a JSONL file\n"


def test_a_full_disk_is_one_line(capsys):
    def main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/models/ben-lab.gguf")

    assert run_main(main) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full (writing /models/ben-lab.gguf)" in err and "df -h" in err


def test_kill_runs_the_cleanup_of_ctrl_c(capsys):
    cleaned = []

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return 0
        finally:
            cleaned.append(True)

    assert run_main(main) == 130 and cleaned == [True]
    assert "interrupted: terminated" in capsys.readouterr().err


def test_atomic_writes_keep_the_permissions_a_plain_open_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        fresh = common.atomic_write(tmp_path / "fresh.jsonl", "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.jsonl"
        kept.write_text("old")
        kept.chmod(0o640)
        common.atomic_write(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "new"
    finally:
        os.umask(previous)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_run(lab_url, tmp_path, capsys):
    from benlab import datagen

    out = tmp_path / "lab.jsonl"
    leftover = tmp_path / ".lab.jsonl.k2j3h4.tmp"  # what atomic_write leaves when killed mid-write
    leftover.write_text("")
    counts = ["--phase-experiments", "1", "--tri-tests", "2", "--discovery-runs", "0", "--drift-runs", "1",
              "--loop-runs", "2"]
    assert common.run_main(datagen.main, ["--api-url", lab_url, "--out", str(out), "--eval-out",
                                          str(tmp_path / "eval.jsonl"), *counts]) == 0
    assert not leftover.exists() and f"removed {leftover}" in capsys.readouterr().out


def test_cpu_cores_counts_physical_cores_this_process_may_use(monkeypatch):
    # two cores with two hyperthreads each; the process may run on CPUs 0, 1 and 2 (cores 0 and 1)
    cpuinfo = "".join(f"processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {cpu // 2}\n\n" for cpu in range(4))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert common.cpu_cores(cpuinfo) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert common.cpu_cores(cpuinfo) == 1
    assert common.cpu_cores("") == 2  # no core ids (e.g. some VMs, other systems): the CPUs it may use
