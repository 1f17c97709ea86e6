"""docs/RUNBOOKS.md is generated from the runbook pack (``incident-console runbook docs``): the
committed file is what the generator writes now, and the generator lists every runbook by seed
file and section, the added ones, their triggers, steps and escalation, and the coverage table."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from console.loader import load, load_config
from console.runbook_docs import COMMAND, render
from console.runbooks import pack_for
from tests.test_runbook_safety import CONFIG, GOOD, INDEX, write

ROOT = Path(__file__).resolve().parent.parent


def test_docs_runbooks_md_is_what_the_generator_writes_now() -> None:
    expected = render(pack_for(load_config(ROOT / "config" / "console.yaml")))
    committed = (ROOT / "docs" / "RUNBOOKS.md").read_text()
    assert committed == expected, f"docs/RUNBOOKS.md is not what the pack gives now: run `{COMMAND}`"


def test_the_generator_lists_runbooks_by_seed_section_and_the_coverage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    added = (
        GOOD.replace("id: good", "id: extra")
        .replace(
            "source: {file: 003.txt, section: High Error Rate}", "source: {added: 'the seeds | miss it'}"
        )
        .replace("covers: [s.error-rate]\n", "")
        .replace(
            "escalation_none: the source gives none", "escalation: [{level: 1, after: 0s, who: on call}]"
        )
    )
    path = write(tmp_path, {"good.yaml": GOOD, "extra.yaml": added}, config=CONFIG, index=INDEX)
    text = render(load(path).pack)
    lines = text.splitlines()
    assert lines[5] == "2 runbooks; 1/2 seed scenarios encoded"
    seed = lines.index("## 003.txt")
    assert lines[seed + 2 : seed + 12] == [
        "### High Error Rate",
        "",
        "`good` (good.yaml): Good",
        "",
        "- severity: medium",
        "- covers: s.error-rate",
        "- triggers: alerts HighErrorRate; thresholds prometheus.error_rate",
        "- steps:",
        "  1. check (promql, measures prometheus.error_rate): Error rate of {{service}}",
        "  2. action (argv, destructive): Restart {{service}}",
    ]
    assert lines[seed + 12 : seed + 15] == [
        "  3. wait 1m00s, then `error-rate` again: Wait, then measure again",
        "  4. action (http, re-enable): Turn automation back on",
        "- escalation: none: the source gives none",
    ]
    extra = lines.index("## Added beyond the seeds")
    assert lines[extra + 4 : extra + 6] == ["`extra` (extra.yaml): Good", ""]
    assert lines[extra + 6] == "- added: the seeds \\| miss it"
    assert "- escalation: level 1, from the start: on call" in lines
    assert lines[-4:] == [
        "| scenario | seed file | section | title | runbooks |",
        "|---|---|---|---|---|",
        "| s.error-rate | 003.txt | High Error Rate | errors | `good` |",
        "| s.other | 003.txt | Other | something else | **none** |",
    ]
    assert main(["runbook", "docs", "--config", str(path)]) == 0
    assert capsys.readouterr().out == text
