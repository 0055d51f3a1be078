#!/usr/bin/env python3
"""Chat with ben-lab, which runs lab experiments for you (see `python chat_with_lab.py --help`)."""

from benlab.chat import main
from benlab.common import run_main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
