"""Lab latency through real HTTP: /run_phase_experiment at N=12, depth 8 (p50/p95 per phase) and /discovery with
4 phases x 20 runs. Usage (from the repository root): .venv/bin/python -m benchmarks.bench_lab [--requests 200]"""

import argparse
import statistics
import time

import requests

from benlab.lab import circuits
from benlab.lab_server import LocalLab


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests per phase (default %(default)s)")
    args = parser.parse_args()
    with LocalLab() as lab, requests.Session() as session:
        all_ms = []
        for phase in circuits.PHASES:
            times = []
            for i in range(args.requests + 10):
                body = {"phase_type": phase, "system_size": 12, "depth": 8, "seed": i}
                start = time.perf_counter()
                session.post(f"{lab.url}/run_phase_experiment", json=body, timeout=30).raise_for_status()
                if i >= 10:  # the first requests warm up imports and caches
                    times.append((time.perf_counter() - start) * 1000)
            all_ms += times
            print(f"/run_phase_experiment {phase:25s} N=12 depth=8: p50 {statistics.median(times):5.2f} ms  "
                  f"p95 {percentile(times, 0.95):5.2f} ms")
        print(f"/run_phase_experiment all phases: p50 {statistics.median(all_ms):.2f} ms  p95 {percentile(all_ms, 0.95):.2f} ms")
        times = []
        for seed in range(5):
            start = time.perf_counter()
            body = {"phases": list(circuits.PHASES), "num_per_phase": 20, "seed": seed}
            result = session.post(f"{lab.url}/discovery", json=body, timeout=60).json()
            times.append(time.perf_counter() - start)
        print(f"/discovery 4 phases x 20: median {statistics.median(times):.3f} s, max {max(times):.3f} s, "
              f"ARI {result['adjusted_rand_index']}")


if __name__ == "__main__":
    main()
