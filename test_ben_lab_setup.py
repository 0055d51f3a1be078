#!/usr/bin/env python3
"""Check this machine before training ben-lab (a script, not a test module; see --help)."""

from benlab.common import run_main
from benlab.setup_check import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
