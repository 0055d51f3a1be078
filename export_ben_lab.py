#!/usr/bin/env python3
"""Export the trained adapter to GGUF, write the Modelfile and register ben-lab in Ollama (see --help)."""

from benlab.common import run_main
from benlab.deploy import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
