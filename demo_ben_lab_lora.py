#!/usr/bin/env python3
"""A walkthrough of ben-lab on real, small examples; --chat talks to the trained model (see --help)."""

from benlab.common import run_main
from benlab.demo import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
