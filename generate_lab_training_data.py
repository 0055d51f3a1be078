#!/usr/bin/env python3
"""Generate training data from live lab experiments (see `python generate_lab_training_data.py --help`)."""

from benlab.common import run_main
from benlab.datagen import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
