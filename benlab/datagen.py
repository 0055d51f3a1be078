"""Training data from live lab experiments: plan a campaign, run it against the lab over HTTP, and write
data/lab_instructions.jsonl (training) and data/lab_eval.jsonl (held-out, checkable answers in meta).

Deterministic: the plan is drawn from --seed, every experiment carries its own seed, and samples are built in plan
order after all results are in, so the same seed and lab give byte-identical files however many workers run.
Training experiments use even seeds, held-out ones odd seeds, discovery runs seeds from 2^30 up: no seed is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import random
import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from benlab import number_drills, samples, tool_samples, tools
from benlab.common import BenLabError, atomic_write, remove_leftover_temporaries
from benlab.lab_client import LabClient
from benlab.lab_server import LocalLab, stop_all

DEFAULT_URL = "http://127.0.0.1:8000"
CATEGORIES = ("phase", "tri", "drift", "loop")
PATHS = {"phase": "/run_phase_experiment", "tri": "/tri", "drift": "/replay_drift"}
# Lab-loop conversations per --loop-runs, by tool; discovery conversations have their own count (--discovery-runs).
LOOP_SHARES = {"run_phase": 0.4, "tri": 0.35, "replay_drift": 0.25}
DISCOVERY_SEED_BASE = 2**30
HELD_OUT_TOOL_CALLS = 40
HELD_OUT_QUESTIONS = 20  # held-out measurement questions, scripted lab sessions, raw phase and discovery results
# Held-out raw results of the lab-loop tools, by tool: the evaluation's kind (TRI and drift ones come from the
# held-out tri and drift runs).
RAW_RESULT_KINDS = {"run_phase": "result_phase", "discovery": "result_discovery"}
HELD_OUT_SWEEPS = 24  # held-out drift sweeps (each a drift_class and a raw result_drift question), whatever --drift-runs
HELD_OUT_PER_PHASE = 5  # held-out identification runs per phase, whatever --phase-experiments


@dataclass(frozen=True)
class Job:
    key: str  # "<split>/<category>/<index>", unique in the campaign
    split: str  # "train" or "eval"
    category: str
    body: dict = field(hash=False)


def experiment_seed(rng: random.Random, split: str) -> int:
    return 2 * rng.randrange(2**29) + (split == "eval")


def phase_body(rng: random.Random, phase: str, split: str) -> dict:
    return {
        "phase_type": phase,
        "system_size": rng.choice([8, 10, 12]),
        "depth": rng.choice([2, 4, 6, 8, 12, 16]),
        "seed": experiment_seed(rng, split),
        "bias": rng.choice([0.5, 0.5, 0.5, 0.4, 0.6, 0.3, 0.7]),
        "noise": rng.choice([0.0, 0.02, 0.05, 0.05, 0.1]),
    }


def tri_body(rng: random.Random, split: str) -> dict:
    return {
        "phase_type": rng.choice(samples.PHASES),
        "system_size": rng.choice([8, 10]),
        "depth": rng.choice([4, 8]),
        "bias": rng.choice([0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]),
        "seed": experiment_seed(rng, split),
    }


def drift_body(rng: random.Random, split: str) -> dict:
    return {
        "phase_type": rng.choice(samples.PHASES),
        "system_size": rng.choice([8, 10]),
        "base_depth": rng.choice([2, 4, 8]),
        "depth_factors": [1, 2, 4, 8],
        "noise": rng.choice([0.0, 0.05, 0.1, 0.1]),  # noise 0 is Flat for three phases: a quarter is enough
        "seed": experiment_seed(rng, split),
    }


@dataclass(frozen=True)
class Counts:
    phase: int = 20  # per phase: identification questions (the fingerprint checks are learned from these alone)
    tri: int = 48  # TRI runs, paired into comparisons
    # discovery conversations (request, TOOL line, result, explanation): with 4, run 40 answered a discovery result
    # with invented numbers ("k-means on 20, 4, 8, 16, 32, ..."); with 16, run 62 explained 12 of 20 held-out
    # results with a cluster left out or made up
    discovery: int = 24
    drift: int = 48  # drift sweeps: drift classification
    loop: int = 48  # lab-loop conversations of the other tools (and 4x as many requests for a TOOL line)

    def loop_jobs(self) -> dict[str, int]:
        jobs = {tool: round(share * self.loop) for tool, share in LOOP_SHARES.items()}
        return {**jobs, "discovery": self.discovery}


def loop_job(rng: random.Random, tool: str, split: str, i: int) -> Job:
    seed = experiment_seed(rng, split) if tool != "discovery" else DISCOVERY_SEED_BASE + 2 * rng.randrange(2**20) + (split == "eval")
    args = tool_samples.draw_args(rng, tool, seed)
    if tool != "discovery":  # the phases in turn. Drawn, one campaign explained ising 4 times and pseudorandom 18;
        # another's 17 TRI results held the GHZ state twice and the random circuit 7 times, and run 43 explained the
        # GHZ state's TRI with the random circuit's sentence.
        args["phase_type"] = samples.PHASES[i % len(samples.PHASES)]
    return Job(f"{split}/loop/{tool}/{i}", split, "loop", {"tool": tool, "args": args})


def plan_campaign(counts: Counts, seed: int, eval_fraction: float) -> list[Job]:
    """Every request of the campaign, in a fixed order drawn from `seed`. Held-out runs are twice the fraction of
    the training counts: each checkable question needs its own run (a pair for TRI comparisons)."""
    jobs: list[Job] = []
    for split in ("train", "eval"):
        # one stream per split: the held-out runs (and the base model's cached answers to them) do not depend on
        # how many training runs were drawn
        rng = random.Random(f"{seed}/{split}")
        def scale(n: int, cap: float = math.inf) -> int:  # held-out: twice the fraction, at most `cap`
            return n if split == "train" else min(math.ceil(2 * eval_fraction * n), cap)

        for phase in samples.PHASES:
            for i in range(scale(counts.phase, HELD_OUT_PER_PHASE)):
                jobs.append(Job(f"{split}/phase/{phase}/{i}", split, "phase", phase_body(rng, phase, split)))
        jobs += [Job(f"{split}/tri/{i}", split, "tri", tri_body(rng, split)) for i in range(scale(counts.tri))]
        jobs += [Job(f"{split}/drift/{i}", split, "drift", drift_body(rng, split))
                 for i in range(scale(counts.drift, HELD_OUT_SWEEPS))]
        for tool, n in counts.loop_jobs().items():
            if split == "eval" and tool not in RAW_RESULT_KINDS:
                continue  # held-out raw TRI and drift results come from the held-out tri and drift runs
            n = max(HELD_OUT_QUESTIONS, scale(n)) if split == "eval" else n
            jobs += [loop_job(rng, tool, split, i) for i in range(n)]
    return jobs


def request_of(job: Job) -> tuple[str, dict]:
    if job.category == "loop":
        return tools.TOOL_PATHS[job.body["tool"]], job.body["args"]
    return PATHS[job.category], job.body


def campaign_id(jobs: list[Job]) -> str:
    text = json.dumps([(j.key, j.body) for j in jobs], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Journal:
    """Append-only record of finished requests beside the output, so --resume can skip them after a crash."""

    def __init__(self, path: Path, campaign: str, resume: bool):
        self.path = path
        self.done: dict[str, dict] = {}
        self._lock = threading.Lock()
        if resume and path.exists():
            self._load(campaign)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"campaign": campaign}) + "\n")
        self._file = path.open("a")

    def _load(self, campaign: str) -> None:
        lines = self.path.read_text().splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("campaign") != campaign:
            raise BenLabError(
                f"{self.path} belongs to a different campaign (other --seed, counts or --eval-fraction); "
                "run again without --resume to start over"
            )
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:  # the line being written when the run was killed
                continue
            self.done[record["key"]] = record["response"]

    def add(self, key: str, response: dict) -> None:
        with self._lock:
            self._file.write(json.dumps({"key": key, "response": response}) + "\n")
            self._file.flush()
            self.done[key] = response

    def close(self, remove: bool) -> None:
        self._file.close()
        if remove:
            self.path.unlink(missing_ok=True)


def run_jobs(clients: list[LabClient], jobs: list[Job], journal: Journal, workers: int) -> dict[str, dict]:
    """Fetch every job's response (skipping those in the journal), one progress bar per category. Each worker
    thread keeps to one of `clients` (one per local lab process), so the labs share the work evenly."""
    assigned, counter = threading.local(), itertools.count()

    def client() -> LabClient:
        if not hasattr(assigned, "client"):
            assigned.client = clients[next(counter) % len(clients)]  # next() on a count is atomic
        return assigned.client

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for category in CATEGORIES:
            todo = [j for j in jobs if j.category == category and j.key not in journal.done]
            total = sum(j.category == category for j in jobs)
            if not total:
                continue
            with tqdm(total=total, initial=total - len(todo), desc=f"{category:9s}", unit="exp") as bar:
                def fetch(job: Job) -> None:
                    journal.add(job.key, client().post(*request_of(job)))
                    bar.update()

                for _ in pool.map(fetch, todo):
                    pass
    return journal.done


def job_index(job: Job) -> int:
    return int(job.key.rsplit("/", 1)[1])


def job_rng(seed: int, key: str) -> random.Random:
    return random.Random(f"{seed}:{key}")


def build_samples(jobs: list[Job], responses: dict[str, dict], seed: int, counts: Counts) -> tuple[list[dict], list[dict], int]:
    """(training samples, held-out samples, experiments skipped because their fingerprint was ambiguous)."""
    train: list[dict] = []
    held_out: list[dict] = []
    skipped = 0
    tri_runs: dict[str, list[dict]] = {"train": [], "eval": []}
    for job in jobs:
        response, rng = responses[job.key], job_rng(seed, job.key)
        out = train if job.split == "train" else held_out
        if job.category == "phase":
            values = samples.measurements(response)
            if not samples.has_physics(values):
                continue
            if samples.fingerprint_phase(values) != response["phase_type"]:
                skipped += 1
                continue
            out.append(samples.phase_identification(response, rng))
            if job.split == "train" and job_index(job) % 2 == 0:
                # half the runs again as a raw lab result: the loop's run_phase conversations alone give each phase
                # 5, and run 32 wrote pseudorandom's explanation in the other three phases' sentence shape
                args = tool_samples.stated_args(rng, "run_phase", job.body)
                out.append(tool_samples.tool_result_sample(rng, "run_phase", args, response, "train"))
        elif job.category == "tri":
            if response.get("feature_names"):  # comparisons reason with the new lab's physics
                tri_runs[job.split].append(response)
        elif job.category == "drift":
            params = {**job.body, "noise": job.body.get("noise", 0.05)}
            if response.get("feature_names"):
                sample = samples.drift_classification(response, params, rng)
                if sample:
                    out.append(sample)
                if job.split == "train" and sample.get("meta", {}).get("answer") == "Saturates":
                    # Saturates sweeps twice, in another wording (its own rng: every other sample stays as drawn):
                    # 11 of 48 training sweeps saturate, and run 52 wrote "so yes, so Grows" in 10 of its 12 misses,
                    # the verdict the 28 Grows sweeps end "so no, so Grows" with
                    others = tuple(w for w in samples.CLASSIFY_DRIFT if w != sample["instruction"])
                    out.append(samples.drift_classification(response, params, job_rng(seed, job.key + "/again"),
                                                            wordings=others))
                call = {"phase_type": job.body["phase_type"], "system_size": job.body["system_size"],
                        "base_depth": job.body["base_depth"], "noise": job.body["noise"], "seed": job.body["seed"]}
                if job.split == "eval":  # the same run as a raw lab result
                    out.append(tool_samples.tool_result_sample(rng, "replay_drift", call, response, "eval", "result_drift"))
                elif job_index(job) % 2 == 0:
                    # half the training sweeps too: with the loop's 12 alone, run 35 ended 11 of its 24 raw-drift
                    # explanations with the drift_class digit walk instead of the deepest run's drift
                    args = tool_samples.stated_args(rng, "replay_drift", call)
                    out.append(tool_samples.tool_result_sample(rng, "replay_drift", args, response, "train"))
        elif job.category == "loop":
            tool, args = job.body["tool"], job.body["args"]
            physics = samples.has_physics(samples.measurements(response)) if tool == "run_phase" else True
            if tool == "run_phase" and physics and samples.fingerprint_phase(samples.measurements(response)) != response["phase_type"]:
                skipped += 1
                continue
            if job.split == "eval":  # the phase the result names (the original lab's too), or its clusters
                out.append(tool_samples.tool_result_sample(rng, tool, args, response, "eval", RAW_RESULT_KINDS[tool]))
                continue
            out.append(tool_samples.tool_result_sample(rng, tool, args, response, "train"))
            if tool == "run_phase" and physics and job_index(job) % 5 == 0:
                out.append(tool_samples.follow_up_sample(rng, args, response))
    for split, runs in tri_runs.items():
        out = train if split == "train" else held_out
        # Training pairs each run with the next and the one after: more comparisons from the same lab runs (each
        # run's TRI is seen on both sides, larger and smaller).
        for i, a in enumerate(runs):
            for step in (1, 2) if split == "train" else (1,):
                b = runs[(i + step) % len(runs)]
                if a is not b and samples.comparable(a, b):
                    rng = job_rng(seed, f"{split}/pair/{i}" + (f"/{step}" if step > 1 else ""))
                    out.append(samples.tri_comparison(a, b, rng))
                    if split == "eval" or (step == 1 and i % 4 == 1):  # a raw pair costs ~900 tokens: one in four
                        out.append(raw_tri_comparison(a, b, rng))
    train += lab_free_samples(seed, counts, "train")
    held_out += lab_free_samples(seed, counts, "eval")
    return train, held_out, skipped


def raw_tri_comparison(a: dict, b: dict, rng: random.Random) -> dict:
    """Two raw /tri results in the question (the evaluation's result_tri_compare)."""
    sample = samples.tri_comparison(a, b, rng, kind="result_tri_compare")
    question = (f"{rng.choice(samples.COMPARE_TRI)}\n\nRun A: {tools.result_message(a)}\n\n"
                f"Run B: {tools.result_message(b)}")
    sample["instruction"], sample["input"] = question, ""
    sample["messages"][1]["content"] = question
    return sample


def lab_free_samples(seed: int, counts: Counts, split: str) -> list[dict]:
    """Samples that need no lab run: requests that become a TOOL line, measurement questions without a result,
    requests the lab cannot run, the lab's concepts, arithmetic drills; for the evaluation also questions whether
    the lab can run N qubits and the scripted lab sessions."""
    # 2 measure-it answers per lab-loop conversation: with 0.8 (38), run 37 gave the string order's expectation
    # for every held-out quantity and phase
    n_calls, n_measure = 4 * counts.loop, 2 * counts.loop
    if split == "eval":  # they cost no lab time: enough for a share to mean something
        n_calls, n_measure = HELD_OUT_TOOL_CALLS, HELD_OUT_QUESTIONS
    rows = []
    tool_names = list(tools.TOOL_PATHS)
    calls = [(f"{split}/tool_call/{i}", tool_names[i % len(tool_names)]) for i in range(n_calls)]
    if split == "train":  # discovery twice as often: its requests state two counts whose values overlap ("8 qubits,
        # 10 runs each"), and runs 40, 43 and 46 dropped, zeroed or swapped them in 1, 3 and 2 of 10 held-out calls
        calls += [(f"train/tool_call/discovery/{i}", "discovery") for i in range(n_calls // len(tool_names))]
    for key, tool in calls:
        rng = job_rng(seed, key)
        seed_i = experiment_seed(rng, split)
        rows.append(tool_samples.tool_call_sample(rng, tool, tool_samples.draw_args(rng, tool, seed_i), split))
    for i in range(n_calls // 6 if split == "train" else HELD_OUT_QUESTIONS):
        rng = job_rng(seed, f"{split}/tool_retry/{i}")
        tool = tool_names[i % len(tool_names)]
        args = tool_samples.draw_args(rng, tool, experiment_seed(rng, split))
        rows.append(tool_samples.tool_retry_sample(rng, tool, args, split))
    for i in range(n_measure):
        rng = job_rng(seed, f"{split}/measurement/{i}")
        rows.append(tool_samples.measurement_question_sample(rng, split, experiment_seed(rng, split)))
    rows += tool_samples.concept_samples(split)
    if split == "train":
        rows += tool_samples.phase_name_samples()
        # four drills per comparison run and sweep: the steps of their rules (benlab/number_drills.py)
        rows += number_drills.drill_samples(job_rng(seed, "train/drills"), 4 * (counts.tri + counts.drift))
        # and one Flat check per sweep, drawn apart so the drills above stay as they were
        flat_rng = job_rng(seed, "train/flat-drills")
        rows += [number_drills.flat_check_sample(flat_rng) for _ in range(counts.drift)]
        rows += [tool_samples.refusal_sample(job_rng(seed, f"train/refusal/{i}"), split) for i in range(counts.loop // 4)]
    n_size = counts.loop if split == "train" else HELD_OUT_QUESTIONS
    rows += [tool_samples.size_question_sample(job_rng(seed, f"{split}/size_question/{i}"), split) for i in range(n_size)]
    if split == "eval":
        rows += [tool_samples.lab_session(job_rng(seed, f"eval/session/{i}"),
                                          tool_samples.SESSION_TOOLS[i % len(tool_samples.SESSION_TOOLS)],
                                          experiment_seed(job_rng(seed, f"eval/session-seed/{i}"), split))
                 for i in range(HELD_OUT_QUESTIONS)]
    return rows


def distinct(rows: list[dict]) -> list[dict]:
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = json.dumps(row["messages"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def approx_tokens(sample: dict) -> int:
    """Words and punctuation marks: a tokenizer-free estimate (BPE tokenizers give about 1.3x this)."""
    return sum(len(re.findall(r"\w+|[^\w\s]", m["content"])) for m in sample["messages"])


def summarize(train: list[dict], held_out: list[dict], skipped: int, wall: float, out: Path, eval_out: Path) -> str:
    lines = []
    for name, rows, path in (("training", train, out), ("held-out", held_out, eval_out)):
        kinds: dict[str, int] = {}
        for row in rows:
            kinds[row["meta"]["kind"]] = kinds.get(row["meta"]["kind"], 0) + 1
        lines.append(f"{name}: {len(rows)} samples -> {path}")
        lines += [f"  {kind:22s} {n}" for kind, n in sorted(kinds.items())]
        if rows:
            tokens = [approx_tokens(r) for r in rows]
            lines.append(f"  length (~tokens): min {min(tokens)}, median {statistics.median(tokens):.0f}, "
                         f"max {max(tokens)}, total {sum(tokens)}")
    if skipped:
        lines.append(f"skipped {skipped} experiments whose features did not show their phase's fingerprint")
    lines.append(f"wall time {wall:.1f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="generate_lab_training_data.py",
        description="Run experiments on the Jarvis Lab API and turn them into grounded instruction/answer pairs "
        "(training file) and checkable held-out questions (evaluation file).",
    )
    parser.add_argument("--api-url", default=os.environ.get("JARVIS_LAB_URL", DEFAULT_URL),
                        help="lab URL (env JARVIS_LAB_URL; default %(default)s)")
    parser.add_argument("--start-lab", action="store_true",
                        help="if the lab is not reachable, start a local one on a free port and stop it at the end")
    parser.add_argument("--out", type=Path, default=Path("data/lab_instructions.jsonl"), help="training file (default %(default)s)")
    parser.add_argument("--eval-out", type=Path, default=Path("data/lab_eval.jsonl"), help="held-out file (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default %(default)s)")
    parser.add_argument("--phase-experiments", type=int, default=Counts.phase, help="experiments per phase, 4 phases (default %(default)s)")
    parser.add_argument("--tri-tests", type=int, default=Counts.tri, help="TRI tests (default %(default)s)")
    parser.add_argument("--discovery-runs", type=int, default=Counts.discovery, help="discovery runs (default %(default)s)")
    parser.add_argument("--drift-runs", type=int, default=Counts.drift, help="replay-drift runs (default %(default)s)")
    parser.add_argument("--loop-runs", type=int, default=Counts.loop,
                        help="lab-loop conversations (request, TOOL line, lab result, explanation) of run_phase, tri "
                        "and replay_drift; the TOOL-line, measurement and refusal samples scale with it (default %(default)s)")
    parser.add_argument("--eval-fraction", type=float, default=0.25,
                        help="held-out experiments as a fraction of the training counts (default %(default)s)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel requests (default %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run without repeating finished requests")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default %(default)s)")
    args = parser.parse_args(argv)
    for name in ("phase_experiments", "tri_tests", "discovery_runs", "drift_runs", "loop_runs"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    if not 0.0 <= args.eval_fraction < 1.0:
        parser.error(f"--eval-fraction must be in [0, 1), got {args.eval_fraction}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    for leftover in (*remove_leftover_temporaries(args.out), *remove_leftover_temporaries(args.eval_out)):
        print(f"removed {leftover}, a half-written file of an interrupted run")
    counts = Counts(args.phase_experiments, args.tri_tests, args.discovery_runs, args.drift_runs, args.loop_runs)
    jobs = plan_campaign(counts, args.seed, args.eval_fraction)
    with ExitStack() as stack:
        clients = [LabClient(args.api_url, timeout=args.timeout)]
        if not clients[0].is_up():
            if not args.start_lab:
                raise BenLabError(
                    f"the lab API at {args.api_url} is not reachable; start it with `python jarvis_api.py` "
                    "(or set --api-url / JARVIS_LAB_URL), or pass --start-lab to start one for this run"
                )
            # One lab process per worker: a lab computes one small experiment at a time (the GIL), so one process
            # per worker is what keeps every core busy.
            print(f"lab not reachable at {args.api_url}; starting {args.workers} local lab process(es) ...", flush=True)
            labs = [LocalLab() for _ in range(args.workers)]
            stack.callback(stop_all, labs)
            for lab in labs:
                lab.spawn()
            clients = [LabClient(lab.wait_ready().url, timeout=args.timeout) for lab in labs]
            print(f"local lab running at {', '.join(lab.url for lab in labs)}", flush=True)
        if clients[0].is_original_lab():
            print(f"the lab at {args.api_url} is the original Jarvis Lab API: its results name no features, so there are "
                  "no identification, TRI-comparison or drift questions from it; everything else is built", flush=True)
        print(f"running {len(jobs)} lab requests with {args.workers} workers", flush=True)
        journal = Journal(args.out.with_name(f".{args.out.name}.journal"), campaign_id(jobs), args.resume)
        try:
            responses = run_jobs(clients, jobs, journal, args.workers)
        finally:
            journal.close(remove=False)
    train, held_out, skipped = build_samples(jobs, responses, args.seed, counts)
    train, held_out = distinct(train), distinct(held_out)
    if not train:
        raise BenLabError("the campaign produced no training samples; raise the experiment counts")
    atomic_write(args.out, "".join(samples.to_json_line(s) + "\n" for s in train))
    atomic_write(args.eval_out, "".join(samples.to_json_line(s) + "\n" for s in held_out))
    journal.close(remove=True)
    print(summarize(train, held_out, skipped, time.perf_counter() - started, args.out, args.eval_out))
    return 0
