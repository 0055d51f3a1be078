"""What every entry point shares: one-line errors, a full disk, and a kill that runs the same cleanup as Ctrl-C."""

import errno
import os
import signal
import time

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
