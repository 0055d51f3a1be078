"""The base model's evaluation answers, kept between runs (evaluate_ben_lab.py).

The base model's answer to a held-out question never changes while the base model and the way answers are
generated stay the same, so each is computed once and reused. One file per base model (a hash of its weights file),
precision, device, generation budgets and the code that renders and generates; inside it, each answer is kept under
a hash of what was asked (the chat, and the choices or the kind), so a held-out file that gains, loses or rewords
questions reuses the answers to all the others and computes only the new ones. Only raw answers are stored; the
verdicts are recomputed from them every run, so a change to how answers are judged needs no new cache. The files
live in $BENLAB_CACHE_DIR (default ~/.cache/benlab/eval-base).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from benlab.common import atomic_write

CACHE_VERSION = 2  # 2: one entry per question (1 kept a whole held-out file's answers as one)
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


def item_key(*asked) -> str:
    """The key of one answer: a hash of everything that was asked."""
    return hashlib.sha256(json.dumps(asked, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:24]


class BaseAnswerCache:
    """Sections ("choices", "texts", "probes", "loss", "sessions") of answers, each keyed by item_key."""

    def __init__(self, base, settings: dict, enabled: bool = True):
        here = Path(__file__).resolve().parent
        key_parts = {
            "version": CACHE_VERSION,
            "model": model_digest(base),
            "settings": settings,
            "code": {name: file_digest(here / name) for name in SOURCES},
        }
        self.key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
        self.path = cache_dir() / f"{self.key}.json"
        self.enabled = enabled
        self.entries = self.load() if enabled else {}

    def load(self) -> dict:
        """What was stored under this key ({} when nothing was, or the file is unreadable)."""
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def missing(self, section: str, keys: list[str]) -> list[int]:
        """The positions of the keys with no stored answer."""
        stored = self.entries.get(section, {})
        return [i for i, key in enumerate(keys) if key not in stored]

    def fill(self, section: str, keys: list[str], computed: dict[int, object]) -> list:
        """Every key's answer: the stored ones, and the computed ones (position -> answer), which are stored."""
        stored = self.entries.setdefault(section, {})
        stored.update({keys[i]: answer for i, answer in computed.items()})
        return [stored[key] for key in keys]

    def save(self) -> None:
        """Write what is stored; a cache that cannot be written is skipped."""
        if not self.enabled:
            return
        try:
            atomic_write(self.path, json.dumps(self.entries))
        except OSError as error:
            print(f"[eval] could not keep the base model's answers in {self.path} ({error.strerror}); "
                  "the next run recomputes them")
