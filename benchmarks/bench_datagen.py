"""Wall time of the default data campaign, lab started locally, as a user runs it:
`generate_lab_training_data.py --start-lab` in a fresh process, several times. Usage (from the repository root):
.venv/bin/python -m benchmarks.bench_datagen [--repeats 3]"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"run{i}"
            start = time.perf_counter()
            subprocess.run([sys.executable, "generate_lab_training_data.py", "--start-lab", "--out", str(out / "train.jsonl"),
                            "--eval-out", str(out / "eval.jsonl")], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
            print(f"run {i + 1}: {times[-1]:.2f} s")
        same = len({(Path(tmp) / f"run{i}" / "train.jsonl").read_bytes() for i in range(args.repeats)}) == 1
        lines = sum(1 for _ in open(Path(tmp) / "run0" / "train.jsonl"))
    print(f"default campaign, lab started locally: median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
          f"max {max(times):.2f} s; {lines} training samples; byte-identical across runs: {same}")


if __name__ == "__main__":
    main()
