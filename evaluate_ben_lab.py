#!/usr/bin/env python3
"""Score base vs fine-tuned ben-lab on held-out lab questions (see --help)."""

from benlab.common import run_main
from benlab.evaluate import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
