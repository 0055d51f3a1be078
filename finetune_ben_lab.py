#!/usr/bin/env python3
"""LoRA fine-tuning on the lab's data (see `python finetune_ben_lab.py --help`; works under `accelerate launch`)."""

from benlab.common import run_main
from benlab.train import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
