#!/usr/bin/env python3
"""Start the Jarvis Lab API (see `python jarvis_api.py --help`)."""

from benlab.common import run_main
from benlab.lab_server import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
