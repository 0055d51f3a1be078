"""Training data from the documentation: each Markdown section under docs/ becomes question/answer pairs in the
same schema as the lab data (the legacy, documentation-based generator), deduplicated, written atomically."""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from benlab import samples
from benlab.common import BenLabError, atomic_write

QUESTIONS = (
    "What does the Jarvis lab documentation say about {topic}?",
    "Explain {topic} in the Jarvis-2v lab.",
    "I am new to the lab. Tell me about {topic}.",
)
MAX_WORDS = 220  # longer sections are split into paragraphs so an answer fits a training sequence


def table_sentences(rows: list[str]) -> list[str]:
    """A Markdown table as one line per row, 'header: value; ...', so the answer reads as text."""
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))] for row in rows]
    header, body = cells[0], [r for r in cells[1:] if not all(re.fullmatch(r":?-{3,}:?", c) for c in r)]
    return ["- " + "; ".join(f"{h}: {v}" for h, v in zip(header, row) if v) for row in body]


def plain(markdown: str) -> str:
    """Markdown to readable text: tables to sentences, wrapped lines joined, link targets and code marks dropped."""
    blocks, table = [], []
    for line in markdown.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            table.append(line)
            continue
        if table:
            blocks.extend(table_sentences(table))
            table = []
        blocks.append(line)
    text = "\n".join(blocks)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = re.sub(r"[*`]", "", text).replace("\\|", "|")
    text = re.sub(r"(?<!\n)\n(?!\n|- |\d+\. )", " ", text)  # unwrap lines inside a paragraph, keep list items
    return re.sub(r"[ \t]+", " ", re.sub(r"\n{3,}", "\n\n", text)).strip()


def sections(path: Path) -> list[tuple[str, str]]:
    """(heading, body) for each '#'-headed section; the file's title prefixes sub-section headings."""
    found, title, heading, body = [], "", None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(#{1,4})\s+(.*)", line)
        if match:
            if heading and "".join(body).strip():
                found.append((heading, "\n".join(body)))
            level, text = len(match.group(1)), plain(match.group(2))
            title = text if level == 1 else title
            heading = text if level == 1 or not title else f"{title}: {text}"
            body = []
        else:
            body.append(line)
    if heading and "".join(body).strip():
        found.append((heading, "\n".join(body)))
    return found


def chunks(text: str) -> list[str]:
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    out, current = [], []
    for paragraph in paragraphs:
        if current and len(" ".join(current + [paragraph]).split()) > MAX_WORDS:
            out.append("\n\n".join(current))
            current = []
        current.append(paragraph)
    if current:
        out.append("\n\n".join(current))
    return out


def doc_samples(docs_dir: Path, seed: int) -> list[dict]:
    rows, seen = [], set()
    for path in sorted(docs_dir.rglob("*.md")):
        for heading, body in sections(path):
            for i, answer in enumerate(chunks(plain(body))):
                if answer in seen or len(answer.split()) < 8:
                    continue
                seen.add(answer)
                topic = heading if i == 0 else f"{heading} (part {i + 1})"
                rng = random.Random(f"{seed}:{path}:{heading}:{i}")
                question = rng.choice(QUESTIONS).format(topic=topic)
                source = str(path.relative_to(docs_dir.parent)) if docs_dir.parent in path.parents else str(path)
                # Said to come from the page it quotes: its numbers are the documentation's, not measurements.
                answer = f"From the lab documentation ({source}): {answer}"
                rows.append(samples.make_sample("documentation", question, "", answer, {"source": source},
                                                samples.Quotes(), section=heading, source=source))
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="generate_lab_doc_training_data.py",
        description="Turn the Markdown documentation (docs/) into question/answer training pairs, in the same "
        "format as generate_lab_training_data.py. finetune_ben_lab.py can train on both files.",
    )
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="documentation folder (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("data/lab_doc_instructions.jsonl"), help="output (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the question wording (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.docs.is_dir():
        raise BenLabError(f"documentation folder {args.docs} not found; pass --docs PATH to the folder with the .md files")
    rows = doc_samples(args.docs, args.seed)
    if not rows:
        raise BenLabError(f"no Markdown sections with text under {args.docs}; nothing to write")
    atomic_write(args.out, "".join(samples.to_json_line(r) + "\n" for r in rows))
    print(f"{len(rows)} documentation samples from {args.docs} -> {args.out}")
    return 0
