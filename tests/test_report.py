"""balkd-report: every cell is the mean of its group's per-language inputs; Markdown, CSV and PNG written."""
import csv
import json
import os
import random
from statistics import geometric_mean, mean

import pytest

from balkd_fairseq.cli import report

LOW, HIGH, SINGLE = ["eu", "tr"], ["es", "en", "de"], ["de"]
LANGS = LOW + HIGH
METRICS = [("MRR", "mrr", 1), ("PPPL", "pppl", 1), ("POS I-L", ("pos", "in_language"), 100), ("POS Z-S", ("pos", "zero_shot"), 100),
           ("NER I-L", ("ner", "in_language"), 100), ("NER Z-S", ("ner", "zero_shot"), 100)]


def _values(seed):
    rng = random.Random(seed)
    return {lang: rng.random() for lang in LANGS}


def _write_model(root, name, seed, zero_shot_missing=None, mask="m"):
    """lm.json and probe.json for one model; returns the per-language inputs."""
    inputs = {"mrr": _values(seed), "pppl": {lang: 1 + 500 * v for lang, v in _values(seed + 100).items()}}
    for i, (task, kind) in enumerate([("pos", "in_language"), ("pos", "zero_shot"), ("ner", "in_language"), ("ner", "zero_shot")]):
        inputs[(task, kind)] = _values(seed * 10 + i)
    if zero_shot_missing:
        inputs[("pos", "zero_shot")][zero_shot_missing] = None
    directory = root / name
    directory.mkdir()
    lm = {"kind": "lm", "name": name, "languages": {
        lang: {"mrr": v, "acc1": v / 2, "pseudo_perplexity": inputs["pppl"][lang], "n_masked": 10, "mask_sha256": mask + lang}
        for lang, v in inputs["mrr"].items()}}
    tasks = {task: {"metric": "x", "in_language": inputs[(task, "in_language")], "zero_shot": inputs[(task, "zero_shot")]}
             for task in ("pos", "ner")}
    (directory / "lm.json").write_text(json.dumps(lm), encoding="utf-8")
    (directory / "probe.json").write_text(json.dumps({"kind": "probing", "name": name, "tasks": tasks}), encoding="utf-8")
    return inputs


def _expected(inputs, key, langs, scale):
    values = [inputs[key][lang] for lang in langs if inputs[key][lang] is not None]
    return (geometric_mean if key == "pppl" else mean)(values) * scale


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_report_cells_are_group_means(tmp_path, capsys):
    models = {"HL": _write_model(tmp_path, "HL", 1), "Ours": _write_model(tmp_path, "Ours", 2, zero_shot_missing="eu")}
    out = tmp_path / "out"
    argv = ["--model", f"HL={tmp_path / 'HL'}",
            "--model", f"Ours={tmp_path / 'Ours' / 'lm.json'},{tmp_path / 'Ours' / 'probe.json'}",
            "--low", *LOW, "--high", *HIGH, "--single", *SINGLE, "--output-dir", str(out)]
    assert report.main(argv) == 0
    markdown = capsys.readouterr().out
    assert markdown == (out / "report.md").read_text(encoding="utf-8")

    rows = _read_csv(out / "report.csv")
    header, body = rows[0], rows[1:]
    assert header == ["group"] + [f"{m} {title}" for m in models for title, _, _ in METRICS]
    groups = {"Low-Res": LOW, "High-Res": HIGH, "{de}": ["de"], "All": LANGS}
    assert [row[0] for row in body] == list(groups)
    for row in body:
        langs = groups[row[0]]
        cells = iter(row[1:])
        for name, inputs in models.items():
            for title, key, scale in METRICS:
                assert float(next(cells)) == pytest.approx(_expected(inputs, key, langs, scale), rel=1e-12), (row[0], name, title)

    md_lines = markdown.splitlines()
    assert md_lines[0].startswith("| group | HL MRR | HL PPPL | HL POS I-L |")
    all_row = next(line for line in md_lines if line.startswith("| All |"))
    assert f"{_expected(models['HL'], 'mrr', LANGS, 1):.3f}" in all_row
    assert f"{_expected(models['Ours'], ('ner', 'zero_shot'), LANGS, 100):.1f}" in all_row
    with open(out / "report.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_without_groups_has_only_all_row(tmp_path, capsys):
    inputs = _write_model(tmp_path, "HL", 3)
    assert report.main(["--model", f"HL={tmp_path / 'HL'}", "--output-dir", str(tmp_path / "o")]) == 0
    rows = _read_csv(tmp_path / "o" / "report.csv")
    assert [r[0] for r in rows[1:]] == ["All"]
    assert float(rows[1][1]) == pytest.approx(mean(inputs["mrr"].values()))


def test_report_warns_when_masks_differ(tmp_path, capsys):
    _write_model(tmp_path, "HL", 1, mask="a")
    _write_model(tmp_path, "Ours", 2, mask="b")
    argv = ["--model", f"HL={tmp_path / 'HL'}", "--model", f"Ours={tmp_path / 'Ours'}", "--output-dir", str(tmp_path / "o")]
    assert report.main(argv) == 0
    assert "different masks" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["--low", "eu", "xx"], "no MRR for language(s) xx"),
        (["--model", "HL=elsewhere"], "name 'HL' given twice"),
        (["--model", "B=/no/such/dir"], "no such file or directory: /no/such/dir"),
        (["--model", "broken"], "expected NAME=PATH"),
    ],
)
def test_report_bad_input_is_one_error_and_writes_nothing(tmp_path, capsys, argv_tail, message):
    _write_model(tmp_path, "HL", 1)
    out = tmp_path / "out"
    assert report.main(["--model", f"HL={tmp_path / 'HL'}", "--output-dir", str(out), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("balkd-fairseq: error:") and "Traceback" not in err
    assert not os.path.exists(out)


def test_report_rejects_non_result_json(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"kind": "other"}', encoding="utf-8")
    assert report.main(["--model", f"X={tmp_path / 'x.json'}", "--output-dir", str(tmp_path / "o")]) == 2
    assert "not a balkd-eval-lm or balkd-probe result" in capsys.readouterr().err
