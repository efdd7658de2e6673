"""balkd-report: group means over runs, mixing refusal, groups, and the paired bootstrap against known cases."""
import csv
import json
import math
import os
from statistics import geometric_mean, mean, stdev

import numpy as np
import pytest

from balkd_fairseq.cli import report
from balkd_fairseq.eval import bootstrap
from balkd_fairseq.eval.item_scores import write_items

LOW, HIGH, SINGLE = ["eu", "tr"], ["es"], ["de"]
LANGS = ["eu", "tr", "es", "de"]
N_ITEMS = 60
TASK_FIELDS = {"pos": ("correct", "total"), "ner": ("tp", "pred", "gold")}


def _lm_items(rng, shift=0.0):
    """Per-language rr / nll per masked position and PPPL per sentence; ``shift`` (plus noise) raises rr."""
    items = {}
    noise = np.random.default_rng(99)
    for k, lang in enumerate(LANGS):
        rr = rng.uniform(0.05, 0.6, N_ITEMS)
        if shift:
            rr = rr + shift + noise.normal(0, 0.05, N_ITEMS)
        rr = np.clip(rr, 1e-3, 1).astype(np.float32)
        nll = rng.uniform(2, 7 + k, N_ITEMS).astype(np.float32)
        count = rng.integers(3, 12, N_ITEMS // 4).astype(np.int32)
        items.update({f"{lang}/rr": rr, f"{lang}/nll": nll, f"{lang}/pppl_count": count,
                      f"{lang}/pppl_nll": (count * rng.uniform(1, 3, count.size)).astype(np.float32)})
    return items


def _probe_items(rng):
    items = {}
    for train in LANGS:
        for test in LANGS:
            total = rng.integers(5, 15, N_ITEMS // 3).astype(np.int32)
            items[f"pos/{train}/{test}/total"] = total
            items[f"pos/{train}/{test}/correct"] = rng.binomial(total, 0.7).astype(np.int32)
            gold = rng.integers(0, 4, N_ITEMS // 3).astype(np.int32)
            pred = rng.integers(0, 4, N_ITEMS // 3).astype(np.int32)
            items[f"ner/{train}/{test}/gold"], items[f"ner/{train}/{test}/pred"] = gold, pred
            items[f"ner/{train}/{test}/tp"] = np.minimum(gold, pred) // 2
    return items


def _lm_values(items, legacy=False):
    """The JSON scores, computed here from the per-item arrays."""
    out = {}
    for lang in LANGS:
        rr, nll = items[f"{lang}/rr"].astype(float), items[f"{lang}/nll"].astype(float)
        ppl = math.exp(nll.mean())
        out[lang] = {"n_masked": N_ITEMS, "mrr": rr.mean(), "acc1": 0.0, "mask_sha256": "m" + lang,
                     ("pseudo_perplexity" if legacy else "mlm_ppl"): ppl,
                     "pppl": math.exp(items[f"{lang}/pppl_nll"].astype(float).sum() / items[f"{lang}/pppl_count"].sum())}
        if legacy:
            del out[lang]["pppl"]
    return out


def _ratio(items, task, train, test):
    f = {name: items[f"{task}/{train}/{test}/{name}"].astype(float).sum() for name in TASK_FIELDS[task]}
    return f["correct"] / f["total"] if task == "pos" else 2 * f["tp"] / (f["pred"] + f["gold"])


def _probe_block(items, task):
    il = {lang: _ratio(items, task, lang, lang) for lang in LANGS}
    zs = {lang: mean(_ratio(items, task, t, lang) for t in LANGS if t != lang) for lang in LANGS}
    return {"metric": "x", "languages": LANGS, "in_language": il, "zero_shot": zs}


def write_run(directory, seed, shift=0.0, masking_seed=1, legacy=False, with_items=True):
    """lm.json (+ lm_items.npz) and probe.json (+ probe_items.npz) of one run; returns its per-language values."""
    rng = np.random.default_rng(seed)
    lm_items, probe_items = _lm_items(rng, shift), _probe_items(rng)
    os.makedirs(directory, exist_ok=True)
    lm = {"kind": "lm", "name": "x", "data": str(directory), "split": "test",
          "masking": {"seed": masking_seed, "mask_prob": 0.15}, "languages": _lm_values(lm_items, legacy)}
    probe = {"kind": "probing", "name": "x", "probe": "linear", "training": {"seed": seed, "epochs": 3},
             "tasks": {task: _probe_block(probe_items, task) for task in ("pos", "ner")}}
    with open(os.path.join(directory, "lm.json"), "w", encoding="utf-8") as f:
        json.dump(lm, f)
    with open(os.path.join(directory, "probe.json"), "w", encoding="utf-8") as f:
        json.dump(probe, f)
    if with_items:
        write_items(os.path.join(directory, "lm_items.npz"), lm_items)
        write_items(os.path.join(directory, "probe_items.npz"), probe_items)
    values = {"MRR": {l: s["mrr"] for l, s in lm["languages"].items()},
              "MLM-PPL": {l: s.get("mlm_ppl", s.get("pseudo_perplexity")) for l, s in lm["languages"].items()}}
    if not legacy:
        values["PPPL"] = {l: s["pppl"] for l, s in lm["languages"].items()}
    for task in ("pos", "ner"):
        values[f"{task.upper()} I-L"] = probe["tasks"][task]["in_language"]
        values[f"{task.upper()} Z-S"] = probe["tasks"][task]["zero_shot"]
    return values


def _group(values, title, langs):
    vals = [values[title][lang] for lang in langs]
    if "PPL" in title:
        return geometric_mean(vals)
    return mean(vals) * (100 if ("POS" in title or "NER" in title) else 1)


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_cells_are_means_over_runs_of_group_means_and_csv_keeps_every_run(tmp_path, capsys):
    runs = {(name, s): write_run(tmp_path / f"s{s}" / name, seed=10 * s + k)
            for k, name in enumerate(["HL", "Ours"]) for s in (1, 2, 3)}
    argv = [f"--model={name}={tmp_path / f's{s}' / name}" for name, s in runs]
    out = tmp_path / "out"
    assert report.main(argv + ["--low", *LOW, "--high", *HIGH, "--single", *SINGLE, "--output-dir", str(out)]) == 0
    markdown = capsys.readouterr().out
    assert markdown == (out / "report.md").read_text(encoding="utf-8")
    groups = {"Low-Res": LOW, "High-Res": HIGH, "{de}": ["de"], "All": LANGS}
    rows = _read_csv(out / "report.csv")
    assert [(r["group"], r["model"]) for r in rows] == [(g, m) for g in groups for m in ("HL", "Ours") for _ in range(3)]
    for row in rows:
        values = runs[(row["model"], int(os.path.basename(os.path.dirname(row["run"]))[1:]))]
        for title in values:
            assert float(row[title]) == pytest.approx(_group(values, title, groups[row["group"]]), rel=1e-6)
    all_row = [c.strip() for c in next(line for line in markdown.splitlines() if line.startswith("| All |")).split("|")]
    header = [c.strip() for c in next(line for line in markdown.splitlines() if line.startswith("| group |")).split("|")]
    per_run = [_group(runs[("Ours", s)], "NER Z-S", LANGS) for s in (1, 2, 3)]
    assert all_row[header.index("Ours NER Z-S")] == f"{mean(per_run):.1f} ± {stdev(per_run):.1f}"
    with open(out / "report.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_results_from_before_the_rename_load_as_mlm_ppl(tmp_path, capsys):
    values = write_run(tmp_path / "old", seed=1, legacy=True)
    assert report.main(["--no-plot"] + ["--model", f"HL={tmp_path / 'old'}", "--output-dir", str(tmp_path / "o")]) == 0
    row = _read_csv(tmp_path / "o" / "report.csv")[0]
    assert "PPPL" not in row and float(row["MLM-PPL"]) == pytest.approx(_group(values, "MLM-PPL", LANGS), rel=1e-6)
    assert "| group | HL MRR | HL MLM-PPL | HL POS I-L |" in capsys.readouterr().out


def test_all_is_every_evaluated_language_not_the_union_of_groups(tmp_path):
    values = write_run(tmp_path / "HL", seed=1)
    assert report.main(["--no-plot"] + ["--model", f"HL={tmp_path / 'HL'}", "--low", "eu", "--high", "es",
                        "--output-dir", str(tmp_path / "o")]) == 0
    rows = {r["group"]: r for r in _read_csv(tmp_path / "o" / "report.csv")}
    assert list(rows) == ["Low-Res", "High-Res", "All"]
    assert float(rows["All"]["MRR"]) == pytest.approx(mean(values["MRR"].values()), rel=1e-6)


def test_groups_by_size_cut_sorted_languages_at_quantiles(tmp_path):
    write_run(tmp_path / "HL", seed=1)
    sizes = {"eu": 50, "tr": 10, "es": 9000, "de": 400}
    stats = {"languages": {lang: {"train": {"lines": n, "tokens": n * 10}} for lang, n in sizes.items()}}
    (tmp_path / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    common = ["--model", f"HL={tmp_path / 'HL'}", "--sizes", str(tmp_path / "stats.json")]
    assert report.main(["--no-plot"] + common + ["--groups-by-size", "--output-dir", str(tmp_path / "thirds")]) == 0
    md = (tmp_path / "thirds" / "report.md").read_text(encoding="utf-8")
    assert "Size 0%–33%: tr; Size 33%–67%: eu, de; Size 67%–100%: es; All: eu, tr, es, de" in md
    languages_json = {"languages": list(sizes), "raw_sentences": sizes}
    (tmp_path / "languages.json").write_text(json.dumps(languages_json), encoding="utf-8")
    assert report.main(["--no-plot"] + ["--model", f"HL={tmp_path / 'HL'}", "--sizes", str(tmp_path / "languages.json"),
                        "--groups-by-size", "0.5", "--output-dir", str(tmp_path / "half")]) == 0
    assert "Size 0%–50%: tr, eu; Size 50%–100%: de, es;" in (tmp_path / "half" / "report.md").read_text(encoding="utf-8")


def test_mixed_evaluations_are_refused_unless_allowed(tmp_path, capsys):
    write_run(tmp_path / "HL", seed=1)
    write_run(tmp_path / "Ours", seed=2, masking_seed=7)
    argv = ["--model", f"HL={tmp_path / 'HL'}", "--model", f"Ours={tmp_path / 'Ours'}"]
    assert report.main(argv + ["--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'HL'} and {tmp_path / 'Ours'}" in err and "masking.seed is 1" in err and "7" in err
    assert not os.path.exists(tmp_path / "o")
    assert report.main(["--no-plot"] + argv + ["--allow-mixed", "--output-dir", str(tmp_path / "o")]) == 0
    assert "Mixed evaluations (--allow-mixed)" in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")


def _set_probe_setting(directory, **settings):
    path = directory / "probe.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**payload, **settings}), encoding="utf-8")


def _probe_train_sentences(directory, count):
    epoch_size = "train split" if count is None else "whole train split"  # as balkd-probe records them
    _set_probe_setting(directory, train_sentences=count, epoch_size=epoch_size)


def test_few_shot_probes_are_named_in_the_table_and_never_mixed_with_whole_split_ones(tmp_path, capsys):
    write_run(tmp_path / "HL", seed=1)
    write_run(tmp_path / "Ours", seed=2)
    _probe_train_sentences(tmp_path / "HL", 30)
    argv = ["--no-plot", "--model", f"HL={tmp_path / 'HL'}", "--model", f"Ours={tmp_path / 'Ours'}"]
    assert report.main(argv + ["--output-dir", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train_sentences is 30" in err and not os.path.exists(tmp_path / "mixed")
    assert report.main(argv + ["--allow-mixed", "--output-dir", str(tmp_path / "allowed")]) == 0
    assert "on the first 30 sentences or the whole split" in (tmp_path / "allowed" / "report.md").read_text(encoding="utf-8")
    _probe_train_sentences(tmp_path / "Ours", 30)
    assert report.main(argv + ["--output-dir", str(tmp_path / "few")]) == 0
    few = (tmp_path / "few" / "report.md").read_text(encoding="utf-8")
    assert "probes were trained on the first 30 sentences of each language's train split (balkd-probe --train-sentences), " \
           "each epoch drawing as many words as the whole split holds." in few
    for name in ("HL", "Ours"):
        _probe_train_sentences(tmp_path / name, None)
    assert report.main(argv + ["--output-dir", str(tmp_path / "whole")]) == 0
    assert "first" not in (tmp_path / "whole" / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["--low", "eu", "xx"], "--low: xx was evaluated by no run"),
        (["--languages", "eu,xx"], "--languages: xx was evaluated by no run"),
        (["--languages", "eu", "--single", "tr"], "--single: tr is not reported (reported: eu)"),
        (["--low", "eu", "tr", "--high", "tr", "es"], "language 'tr' is in both --low and --high"),
        (["--model", "B=/no/such/dir"], "no such file or directory: /no/such/dir"),
        (["--model", "broken"], "expected NAME=PATH"),
        (["--compare", "HL:Ours"], "no --model named 'Ours'"),
        (["--groups-by-size", "0.7,0.2"], "quantiles must be increasing"),
        (["--groups-by-size"], "--groups-by-size: no stats.json in"),
        (["--compare", "HL:HL"], "HL is compared with itself"),
    ],
)
def test_bad_input_is_one_error_and_writes_nothing(tmp_path, capsys, argv_tail, message):
    write_run(tmp_path / "HL", seed=1)
    out = tmp_path / "out"
    assert report.main(["--model", f"HL={tmp_path / 'HL'}", "--output-dir", str(out), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("balkd-fairseq: error:") and "Traceback" not in err
    assert not os.path.exists(out)


def _set(directory, name, **fields):
    path = directory / name
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload.update(fields)
    path.write_text(json.dumps(payload), encoding="utf-8")


def test_lm_scores_and_probes_of_different_checkpoints_in_one_run_are_refused(tmp_path, capsys):
    write_run(tmp_path / "HL", seed=1)
    _set(tmp_path / "HL", "lm.json", checkpoint="/ck/HL-balanced.pt", checkpoint_sha256="a" * 64)  # re-evaluated
    _set(tmp_path / "HL", "probe.json", checkpoint="/ck/HL.pt", checkpoint_sha256="b" * 64)  # under the same name
    argv = ["--no-plot", "--model", f"HL={tmp_path / 'HL'}", "--output-dir", str(tmp_path / "out")]
    assert report.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scores sha256 aaaaaaaaaaaa but" in err and "probes sha256 bbbbbbbbbbbb" in err
    assert not os.path.exists(tmp_path / "out")
    _set(tmp_path / "HL", "probe.json", checkpoint_sha256="a" * 64)  # the same content under another path
    assert report.main(argv) == 0
    _set(tmp_path / "HL", "probe.json", random_init=1)  # balkd-probe --random-init: the untrained control
    assert report.main(argv) == 2
    assert "probes the untrained weights of --random-init 1" in capsys.readouterr().err
    # an older lm.json records the path only, which a moved project changes: a warning, not a refusal
    _set(tmp_path / "HL", "lm.json", checkpoint_sha256=None)
    _set(tmp_path / "HL", "probe.json", random_init=None)
    assert report.main(argv) == 0
    assert "recorded by path only" in capsys.readouterr().err


def test_languages_leaves_out_a_language_only_probed(tmp_path, capsys):
    write_run(tmp_path / "HL", seed=1)
    probe = json.loads((tmp_path / "HL" / "probe.json").read_text(encoding="utf-8"))
    for block in probe["tasks"].values():
        block["in_language"]["xx"], block["zero_shot"]["xx"] = 0.5, 0.4  # e.g. a UD language with no LM data
    (tmp_path / "HL" / "probe.json").write_text(json.dumps(probe), encoding="utf-8")
    argv = ["--no-plot", "--model", f"HL={tmp_path / 'HL'}"]
    assert report.main(argv + ["--output-dir", str(tmp_path / "all")]) == 2
    assert "has no MRR for language(s) xx; report the others with --languages" in capsys.readouterr().err
    assert report.main(argv + ["--languages", ",".join(LANGS), "--low", "eu", "--output-dir", str(tmp_path / "o")]) == 0
    rows = {r["group"] for r in _read_csv(tmp_path / "o" / "report.csv")}
    assert rows == {"Low-Res", "All"}
    all_mrr = next(r for r in _read_csv(tmp_path / "o" / "report.csv") if r["group"] == "All")
    assert float(all_mrr["POS I-L"]) == pytest.approx(_group(write_run(tmp_path / "again", seed=1), "POS I-L", LANGS))


def test_result_paths_with_commas_and_equals_signs(tmp_path, capsys):
    run = tmp_path / "lr=5e-4,seed=1" / "HL"
    write_run(run, seed=1)
    assert report.main(["--no-plot", "--model", f"HL={run}", "--output-dir", str(tmp_path / "o")]) == 0
    assert str(run) in _read_csv(tmp_path / "o" / "report.csv")[0]["run"]


def test_output_dir_naming_a_file_is_one_error(tmp_path, capsys):
    write_run(tmp_path / "HL", seed=1)
    (tmp_path / "taken").write_text("keep me", encoding="utf-8")
    assert report.main(["--model", f"HL={tmp_path / 'HL'}", "--output-dir", str(tmp_path / "taken")]) == 2
    assert "--output-dir" in capsys.readouterr().err and (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.parametrize("name", ["A|B", "Ours:v2", "x,y"])
def test_model_names_that_the_table_or_compare_would_split_are_refused(tmp_path, capsys, name):
    write_run(tmp_path / "r", seed=1)
    assert report.main(["--model", f"{name}={tmp_path / 'r'}", "--output-dir", str(tmp_path / "o")]) == 2
    assert f"--model: model name {name!r} holds" in capsys.readouterr().err


def test_the_plot_has_no_empty_panels(tmp_path, monkeypatch):
    # runs evaluated but never probed: the plot shows the LM metrics only
    write_run(tmp_path / "r", seed=1)
    (tmp_path / "r" / "probe.json").unlink()
    (tmp_path / "r" / "probe_items.npz").unlink()
    plotted = []
    monkeypatch.setattr(report, "plot_png", lambda models, metrics, languages, f: plotted.extend(m.key for m in metrics))
    assert report.main(["--model", f"X={tmp_path / 'r'}", "--output-dir", str(tmp_path / "o")]) == 0
    assert plotted and not [key for key in plotted if key.startswith(("pos", "ner"))], plotted


def test_rejects_non_result_json(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"kind": "other"}', encoding="utf-8")
    assert report.main(["--model", f"X={tmp_path / 'x.json'}", "--output-dir", str(tmp_path / "o")]) == 2
    assert "not a balkd-eval-lm or balkd-probe result" in capsys.readouterr().err


@pytest.mark.parametrize("metric,value,shown", [("mrr", "NaN", "nan"), ("mrr", "1.5", "1.5"),
                                                 ("mlm_ppl", "Infinity", "inf"), ("pppl", '"12"', "'12'")])
def test_rejects_scores_that_are_not_numbers_in_range(tmp_path, capsys, metric, value, shown):
    # a diverged model's NaN would be averaged, and compared, like any other score
    write_run(tmp_path / "r", seed=1)
    lm = tmp_path / "r" / "lm.json"
    payload = json.loads(lm.read_text(encoding="utf-8"))
    lang = next(iter(payload["languages"]))
    text = json.dumps({**payload, "languages": {**payload["languages"], lang: {
        **payload["languages"][lang], metric: "VALUE"}}}).replace('"VALUE"', value)
    lm.write_text(text, encoding="utf-8")
    assert report.main(["--model", f"X={tmp_path / 'r'}", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{lm}: {lang} {metric} is {shown}, not a number" in err, err
    assert not (tmp_path / "o").exists()


def test_a_new_report_removes_what_it_does_not_replace_and_never_a_users_file(tmp_path, capsys):
    for name, shift in (("HL", 0.0), ("Ours", 0.2)):
        write_run(tmp_path / name, seed=1, shift=shift)
    models = ["--model", f"HL={tmp_path / 'HL'}", "--model", f"Ours={tmp_path / 'Ours'}"]
    out = tmp_path / "o"
    assert report.main(models + ["--compare", "Ours:HL", "--bootstrap", "50", "--output-dir", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"report.md", "report.csv", "report_compare.csv", "report.png"}
    (out / "other.md").write_text("the user's notes", encoding="utf-8")
    # HL alone, no plot: the comparison and plot of HL and Ours would describe models this table does not show
    assert report.main(models[:2] + ["--no-plot", "--output-dir", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"report.md", "report.csv", "other.md"}
    assert "Ours" not in (out / "report.md").read_text(encoding="utf-8")
    (out / "mine.md").write_text("# my own table\n", encoding="utf-8")
    capsys.readouterr()
    assert report.main(models + ["--prefix", "mine", "--output-dir", str(out)]) == 2
    assert "mine.md was not written by balkd-report; refusing to replace it" in capsys.readouterr().err
    assert (out / "mine.md").read_text(encoding="utf-8") == "# my own table\n" and not (out / "mine.csv").exists()


def test_earlier_reports_are_recognised_behind_a_long_banner_and_in_the_older_csv_layout(tmp_path):
    from balkd_fairseq.eval.report_files import check_replaceable

    banner = "**Mixed evaluations (--allow-mixed)**: " + "/a/long/path/of/a/run " * 400 + "\n\n"
    (tmp_path / "report.md").write_text(banner + "| group | HL MRR |\n|---|---|\n", encoding="utf-8")
    (tmp_path / "report.csv").write_text("group,HL MRR,HL MLM-PPL\nAll,0.1,20\n", encoding="utf-8")
    check_replaceable(str(tmp_path / "report"))


def test_the_table_note_gives_the_mask_rate_the_runs_were_scored_with(tmp_path):
    write_run(tmp_path / "r", seed=1)
    lm = tmp_path / "r" / "lm.json"
    payload = json.loads(lm.read_text(encoding="utf-8"))
    payload["masking"] = {**payload.get("masking", {}), "mask_prob": 0.3}
    lm.write_text(json.dumps(payload), encoding="utf-8")
    assert report.main(["--model", f"X={tmp_path / 'r'}", "--no-plot", "--output-dir", str(tmp_path / "o")]) == 0
    assert "with 30 % of the tokens masked at once" in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- bootstrap
def _lang(runs):
    """LanguageItems of one language: ``runs`` = list of 1-D per-item values (den = 1)."""
    return bootstrap.stack_runs([[(np.asarray(v, float), np.ones(len(v)))] for v in runs])


def test_identical_models_give_a_zero_interval():
    rng = np.random.default_rng(0)
    items = [_lang([rng.normal(size=50) for _ in range(3)]) for _ in range(2)]
    interval = bootstrap.paired_bootstrap(items, items, False, 500, seed=3)
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0) and not interval.excludes_zero


def test_seed_level_interval_matches_hand_computation():
    """No item noise, per-run offsets -c, 0, +c: a replicate is delta + the mean offset of 3 resampled runs,
    whose 2.5 % / 97.5 % percentiles are -c / +c (each has probability 1/27 > 2.5 %)."""
    delta, c = 0.5, 0.2
    base = np.full(40, 1.0)
    a = [_lang([base + delta + t for t in (-c, 0.0, c)])]
    b = [_lang([base, base, base])]
    interval = bootstrap.paired_bootstrap(a, b, False, 2000, seed=1)
    assert interval.difference == pytest.approx(delta)
    assert interval.low == pytest.approx(delta - c) and interval.high == pytest.approx(delta + c)


def test_item_level_interval_is_paired_and_centred_on_the_shift():
    """A = B + delta + small noise, B itself very noisy: the paired interval's width follows the noise of the
    differences (sd s), not of B's scores; a test that ignored the pairing would be ~50 times wider."""
    rng = np.random.default_rng(5)
    n, delta, s = 400, 0.3, 0.1
    b_items = rng.normal(0, 5.0, n)
    a_items = b_items + delta + rng.normal(0, s, n)
    interval = bootstrap.paired_bootstrap([_lang([a_items])], [_lang([b_items])], False, 2000, seed=2)
    half_width = 1.96 * (a_items - b_items).std() / math.sqrt(n)
    assert interval.difference == pytest.approx((a_items - b_items).mean())
    assert interval.excludes_zero and abs(interval.difference - delta) < 4 * s / math.sqrt(n)
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.15)
    assert (interval.low + interval.high) / 2 == pytest.approx(interval.difference, abs=0.3 * half_width)


def test_same_distribution_interval_contains_zero():
    rng = np.random.default_rng(11)
    a = [_lang([rng.normal(1.0, 1.0, 300) for _ in range(3)])]
    b = [_lang([rng.normal(1.0, 1.0, 300) for _ in range(3)])]
    assert not bootstrap.paired_bootstrap(a, b, False, 1000, seed=4).excludes_zero


def test_ratio_metrics_are_recomputed_from_sums():
    """PPPL = exp(sum nll / sum tokens) per language, geometric over languages; F1-like ratios likewise."""
    rng = np.random.default_rng(2)
    langs, expected = [], []
    for _ in range(3):
        count = rng.integers(1, 9, 20).astype(float)
        nll = count * rng.uniform(1, 4, 20)
        langs.append(bootstrap.stack_runs([[(nll, count)]]))
        expected.append(nll.sum() / count.sum())
    assert bootstrap.group_statistic(langs, log_scale=True)[0] == pytest.approx(math.exp(mean(expected)))


def test_compare_marks_a_real_difference_in_table_and_csv(tmp_path, capsys):
    argv = []
    for s in (1, 2):
        write_run(tmp_path / f"s{s}" / "HL", seed=s)
        write_run(tmp_path / f"s{s}" / "Ours", seed=s, shift=0.2)  # same items, rr higher by 0.2 + noise
        argv += ["--model", f"HL={tmp_path / f's{s}' / 'HL'}", "--model", f"Ours={tmp_path / f's{s}' / 'Ours'}"]
    out = tmp_path / "o"
    assert report.main(["--no-plot"] + argv + ["--compare", "Ours:HL", "--bootstrap", "300", "--output-dir", str(out)]) == 0
    rows = {(r["group"], r["metric"]): r for r in _read_csv(out / "report_compare.csv")}
    mrr = rows[("All", "MRR")]
    assert float(mrr["difference"]) == pytest.approx(0.2, abs=0.02) and mrr["excludes_zero"] == "true"
    assert float(mrr["ci_low"]) < float(mrr["difference"]) < float(mrr["ci_high"])
    same = rows[("All", "MLM-PPL")]  # the nll items are identical: interval [0, 0], not marked
    assert float(same["difference"]) == 0.0 and same["excludes_zero"] == "false"
    assert "Ours − HL MRR" in capsys.readouterr().out
    # --confidence: a wider level widens the interval around the same difference (same replicates and seed)
    wide = tmp_path / "o99"
    assert report.main(["--no-plot"] + argv + ["--compare", "Ours:HL", "--bootstrap", "300", "--confidence", "0.99",
                                               "--output-dir", str(wide)]) == 0
    mrr99 = next(r for r in _read_csv(wide / "report_compare.csv") if (r["group"], r["metric"]) == ("All", "MRR"))
    assert mrr99["difference"] == mrr["difference"]
    assert float(mrr99["ci_low"]) < float(mrr["ci_low"]) and float(mrr99["ci_high"]) > float(mrr["ci_high"])
    assert "with 99 % intervals" in (wide / "report.md").read_text(encoding="utf-8")
    assert "with 95 % intervals" in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("value", ["1", "0", "1.5", "-0.1", "nan"])
def test_confidence_outside_0_and_1_is_one_error_line(tmp_path, capsys, value):
    write_run(tmp_path / "HL", seed=1)
    argv = ["--no-plot", "--model", f"HL={tmp_path / 'HL'}", "--confidence", value, "--output-dir", str(tmp_path / "o")]
    assert report.main(argv) == 2
    assert capsys.readouterr().err.strip() == f"balkd-fairseq: error: --confidence must be between 0 and 1 (exclusive), got {float(value)}"
    assert not (tmp_path / "o").exists()


def test_compare_without_item_scores_gives_the_difference_only(tmp_path):
    argv = []
    for name, shift in (("HL", 0.0), ("Ours", 0.2)):
        write_run(tmp_path / name, seed=1, shift=shift, with_items=False)
        argv += ["--model", f"{name}={tmp_path / name}"]
    assert report.main(["--no-plot"] + argv + ["--compare", "Ours:HL", "--output-dir", str(tmp_path / "o")]) == 0
    mrr = next(r for r in _read_csv(tmp_path / "o" / "report_compare.csv") if r["metric"] == "MRR")
    assert mrr["difference"] and mrr["ci_low"] == "" and mrr["excludes_zero"] == ""


def test_probing_settings_compare_each_tasks_data_hash_as_balkd_probe_writes_it():
    from balkd_fairseq.eval.report_runs import probing_settings

    payload = {"probe": "linear", "layer": -1, "data_sha256": "top", "tasks": {"pos": {"data_sha256": "p1"},
                                                                            "ner": {"data_sha256": "n1"}}}
    other = {**payload, "tasks": {"pos": {"data_sha256": "p2"}, "ner": {"data_sha256": "n1"}}}
    a, b = probing_settings(payload), probing_settings(other)
    assert a["data_sha256[pos]"] == "p1" and a["data_sha256[ner]"] == "n1"
    assert [k for k in a if a[k] != b.get(k)] == ["data_sha256[pos]"]


def test_probing_settings_tell_few_shot_probes_from_whole_splits():
    """Probes trained on N sentences (balkd-probe --train-sentences) are not comparable with whole-split ones;
    results written before the flag existed were whole-split probes."""
    from balkd_fairseq.eval.report_runs import probing_settings

    older = {"probe": "linear", "layer": -1, "tasks": {"pos": {"data_sha256": "p1"}}}
    whole, few = {**older, "train_sentences": None}, {**older, "train_sentences": 30}
    assert probing_settings(older) == probing_settings(whole)
    assert [k for k in probing_settings(few) if probing_settings(few)[k] != probing_settings(whole)[k]] == ["train_sentences"]
    # few-shot probes of before the whole split's updates were given to them (one pass over N sentences) differ too
    patient = {**few, "epoch_size": "whole train split"}
    assert [k for k in probing_settings(patient) if probing_settings(patient)[k] != probing_settings(few)[k]] == ["epoch_size"]
    assert probing_settings({**whole, "epoch_size": "train split"}) == probing_settings(older)
    # word features pooled otherwise than from first subwords (balkd-probe --word-pooling) differ; older results
    # were first subwords
    mean = {**whole, "word_pooling": "mean"}
    assert [k for k in probing_settings(mean) if probing_settings(mean)[k] != probing_settings(whole)[k]] == ["word_pooling"]
    assert probing_settings({**whole, "word_pooling": "first"}) == probing_settings(older)


def test_other_word_poolings_are_named_in_the_table_and_never_mixed(tmp_path, capsys):
    write_run(tmp_path / "HL", seed=1)
    write_run(tmp_path / "Ours", seed=2)
    _set_probe_setting(tmp_path / "HL", word_pooling="mean")
    argv = ["--no-plot", "--model", f"HL={tmp_path / 'HL'}", "--model", f"Ours={tmp_path / 'Ours'}"]
    assert report.main(argv + ["--output-dir", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "word_pooling is 'mean' in the first, 'first' in the second" in err and not os.path.exists(tmp_path / "mixed")
    _set_probe_setting(tmp_path / "Ours", word_pooling="mean")
    assert report.main(argv + ["--output-dir", str(tmp_path / "mean")]) == 0
    assert "A word's features for the probes: the mean of its subwords' states (balkd-probe --word-pooling)." in \
        (tmp_path / "mean" / "report.md").read_text(encoding="utf-8")


def test_plot_legend_has_every_model_in_the_colour_of_its_bars(tmp_path):
    """A model with probing results only (the random-init control) has no bar in the first panel (MRR): it
    still gets a legend entry, in the colour its bars have in the probing panels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from balkd_fairseq.eval.report_plot import plot_figure
    from balkd_fairseq.eval.report_runs import METRICS, Model, load_run

    models = []
    for name in ("HL", "Ours", "Random-init"):
        write_run(tmp_path / name, seed=len(models) + 1)
        if name == "Random-init":
            os.remove(tmp_path / name / "lm.json")
            os.remove(tmp_path / name / "lm_items.npz")
        model = Model(name)
        model.runs.append(load_run(name, str(tmp_path / name)))
        models.append(model)
    fig = plot_figure(models, list(METRICS), LANGS)
    axes = fig.axes
    legend = axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["HL", "Ours", "Random-init"]
    legend_colors = [to_hex(h.get_facecolor()) for h in legend.legend_handles]
    assert len(set(legend_colors)) == 3
    pos = next(ax for ax in axes if ax.get_title().startswith("POS I-L"))
    # bars are drawn model by model, len(LANGS) each: the k-th model's bars carry its legend colour
    bar_colors = [to_hex(patch.get_facecolor()) for patch in pos.patches]
    assert bar_colors == [c for c in legend_colors for _ in LANGS]
    mrr = axes[0]
    assert len(mrr.patches) == 2 * len(LANGS), "the control has no MRR bars"
