#!/usr/bin/env python3
"""Generate training data from the documentation in docs/ (see --help)."""

from benlab.common import run_main
from benlab.docgen import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
