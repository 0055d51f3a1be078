"""The documentation-based generator."""

import json

from benlab import docgen
from benlab.common import run_main


def test_sections_become_deduplicated_samples(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(
        "# Lab\nThe lab simulates qubits exactly, every amplitude\nkept in memory at all times.\n\n"
        "## Table\n| feature | meaning |\n| --- | --- |\n| string_order | the SPT fingerprint of the cluster |\n"
    )
    (docs / "b.md").write_text("# Copy\nThe lab simulates qubits exactly, every amplitude\nkept in memory at all times.\n")
    out = tmp_path / "docs.jsonl"
    assert run_main(docgen.main, ["--docs", str(docs), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2  # the copied section is dropped
    # each answer says which page it comes from, so its numbers are the documentation's, not measurements
    assert rows[0]["output"] == ("From the lab documentation (docs/a.md): The lab simulates qubits exactly, every "
                                 "amplitude kept in memory at all times.")
    assert rows[1]["output"].endswith(": - feature: string_order; meaning: the SPT fingerprint of the cluster")
    assert rows[1]["meta"]["source"] == "docs/a.md"
    assert "Lab: Table" in rows[1]["instruction"]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]


def test_the_repository_docs_feed_the_generator(tmp_path):
    out = tmp_path / "docs.jsonl"
    assert run_main(docgen.main, ["--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 10 and len({r["output"] for r in rows}) == len(rows)


def test_missing_docs_folder_is_one_line(tmp_path, capsys):
    assert run_main(docgen.main, ["--docs", str(tmp_path / "nope"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--docs" in capsys.readouterr().err
