"""The setup checker: a table or JSON, and exit 1 only when a step the user asked for cannot run."""

import json

from benlab import setup_check
from benlab.common import run_main


def test_json_report_on_this_machine(lab_url, capsys):
    assert run_main(setup_check.main, ["--json", "--api-url", lab_url]) == 0
    report = json.loads(capsys.readouterr().out)
    names = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    assert names["lab API"]["status"] == "pass" and names["gguf writer"]["status"] == "pass"
    assert {"python", "torch device", "free disk", "free RAM", "base model", "llama-cpp-python", "ollama", "scripts"} <= set(names)


def test_missing_base_model_fails_only_when_training_is_asked_for(lab_url, tmp_path, capsys):
    missing = ["--base-model", str(tmp_path / "nope.gguf"), "--api-url", lab_url, "--no-start-lab"]
    assert run_main(setup_check.main, missing + ["--steps", "train"]) == 1
    assert "not ready: base model" in capsys.readouterr().out
    assert run_main(setup_check.main, missing + ["--steps", "data,export"]) == 0


def test_unknown_step_is_rejected():
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        setup_check.parse_args(["--steps", "bake"])
    assert exit_info.value.code == 2


def test_the_output_folder_is_tried_not_assumed(lab_url, tmp_path, capsys):
    common = ["--json", "--api-url", lab_url, "--no-start-lab", "--steps", "export"]
    assert run_main(setup_check.main, common + ["--out-dir", str(tmp_path / "not" / "made" / "yet")]) == 0
    assert not (tmp_path / "not").exists()
    capsys.readouterr()
    assert run_main(setup_check.main, common + ["--out-dir", "/proc/benlab-cannot-write-here"]) == 1
    names = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert names["output folder"]["status"] == "fail" and "pick a folder you can write to" in names["output folder"]["detail"]
