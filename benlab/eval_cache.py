"""The base model's evaluation answers, kept between runs (evaluate_ben_lab.py).

The base model's answers to a held-out file never change while the base model, the file and the way answers are
generated stay the same, so they are computed once and reused: the key is a hash of the base model's weights file,
the held-out file, the question limit, the precision and device, the generation budgets and the code that renders
and generates. Only raw answers are stored; the verdicts are recomputed from them every run, so a change to how
answers are judged needs no new cache. The files live in $BENLAB_CACHE_DIR (default ~/.cache/benlab/eval-base).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from benlab.common import atomic_write

CACHE_VERSION = 1
# The code that decides what the base model is asked and how it answers: a change to any of these is a new key.
SOURCES = ("generation.py", "chat.py", "tools.py", "models.py")


def cache_dir() -> Path:
    configured = os.environ.get("BENLAB_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "benlab" / "eval-base"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(base) -> str:
    """The base model's weights: its GGUF file, or every file of its local directory; a hub id that resolved to
    no local directory is keyed by its name."""
    root = Path(base.path)
    if base.gguf_file:
        return file_digest(root / base.gguf_file)
    if root.is_dir():
        return hashlib.sha256("".join(f"{p.name}:{file_digest(p)}" for p in sorted(root.iterdir())
                                      if p.is_file()).encode()).hexdigest()
    return hashlib.sha256(str(base.path).encode()).hexdigest()


class BaseAnswerCache:
    def __init__(self, base, eval_path: Path, settings: dict):
        here = Path(__file__).resolve().parent
        key_parts = {
            "version": CACHE_VERSION,
            "model": model_digest(base),
            "eval_file": file_digest(eval_path),
            "settings": settings,
            "code": {name: file_digest(here / name) for name in SOURCES},
        }
        self.key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
        self.path = cache_dir() / f"{self.key}.json"

    def load(self) -> dict:
        """What was stored under this key ({} when nothing was, or the file is unreadable)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def save(self, entries: dict) -> None:
        """Add entries (e.g. "answers", "sessions") to what is stored; a cache that cannot be written is skipped."""
        try:
            atomic_write(self.path, json.dumps({**self.load(), **entries}))
        except OSError as error:
            print(f"[eval] could not keep the base model's answers in {self.path} ({error.strerror}); "
                  "the next run recomputes them")
