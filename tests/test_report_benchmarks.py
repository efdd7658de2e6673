"""balkd-report --across-benchmarks: runs on several benchmarks (data seeds) as a second level."""
import os
from statistics import mean, stdev

import numpy as np
import pytest
from test_report import LANGS, _group, _read_csv, write_run

from balkd_fairseq.cli import report
from balkd_fairseq.eval import bootstrap


def _lang(runs):
    return bootstrap.stack_runs([[(np.asarray(v, float), np.ones(len(v)))] for v in runs])


def test_benchmark_level_interval_matches_hand_computation():
    """No item or seed noise; the difference is d1 on one benchmark and d2 on the other. A replicate is the mean of
    two benchmarks drawn with replacement: d1, (d1 + d2) / 2 or d2 with probability 1/4, 1/2, 1/4, so the 2.5 % and
    97.5 % percentiles are d1 and d2. With the seeds alone resampled the interval would be [d, d] on each."""
    base = np.full(30, 1.0)
    d1, d2 = 0.1, 0.5
    benchmarks = [([_lang([base + d1, base + d1])], [_lang([base, base])]),
                  ([_lang([base + d2, base + d2])], [_lang([base, base])])]
    interval = bootstrap.paired_bootstrap_levels(benchmarks, False, 2000, seed=1)
    assert interval.difference == pytest.approx((d1 + d2) / 2)
    assert interval.low == pytest.approx(d1) and interval.high == pytest.approx(d2)


def test_benchmark_level_widens_the_interval_of_a_difference_that_varies_with_the_benchmark():
    """The difference is 0.3 + 0.0, 0.4 or 0.8 on three benchmarks (small noise). Three benchmarks drawn with
    replacement are all the first or all the third with probability 1/27 > 2.5 % each, so the interval is about
    [0.3, 1.1]. Resampling the six runs as if independent (no benchmark level) gives a narrower one."""
    rng = np.random.default_rng(3)
    shifts = (0.0, 0.4, 0.8)
    benchmarks = []
    for shift in shifts:
        b = [rng.normal(1.0, 1.0, 200) for _ in range(2)]
        a = [x + 0.3 + shift + rng.normal(0, 0.1, 200) for x in b]
        benchmarks.append(([_lang(a)], [_lang(b)]))
    levels = bootstrap.paired_bootstrap_levels(benchmarks, False, 1000, seed=2)
    pooled_a = _lang([x for a, _ in benchmarks for x in a[0].num[:, 0, :]])
    pooled_b = _lang([x for _, b in benchmarks for x in b[0].num[:, 0, :]])
    flat = bootstrap.paired_bootstrap([pooled_a], [pooled_b], False, 1000, seed=2)
    assert levels.difference == pytest.approx(flat.difference)
    assert levels.low == pytest.approx(0.3, abs=0.05) and levels.high == pytest.approx(1.1, abs=0.05)
    assert flat.high - flat.low < 0.8 * (levels.high - levels.low)


def _two_benchmarks(tmp_path, models=("HL", "Ours"), seeds=(1, 2)):
    """Each model on benchmarks 1 and 2 (masking seeds 1 and 7) with training seeds ``seeds``; the argv and values."""
    argv, values = [], {}
    for bench, masking_seed in ((1, 1), (2, 7)):
        for s in seeds:
            for k, name in enumerate(models):
                directory = tmp_path / f"b{bench}" / f"s{s}" / name
                values[(name, bench, s)] = write_run(directory, seed=100 * bench + 10 * s + k, masking_seed=masking_seed,
                                                     shift=0.2 * k)
                argv += ["--model", f"{name}={directory}"]
    return argv, values


def test_runs_on_two_benchmarks_are_refused_without_the_flag(tmp_path, capsys):
    argv, _ = _two_benchmarks(tmp_path)
    assert report.main(["--no-plot", *argv, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "masking.seed" in err and "--across-benchmarks" in err
    assert not (tmp_path / "o").exists()


def test_across_benchmarks_table_splits_the_spread_and_the_csv_names_each_runs_benchmark(tmp_path, capsys):
    argv, values = _two_benchmarks(tmp_path)
    out = tmp_path / "o"
    assert report.main(["--no-plot", *argv, "--across-benchmarks", "--compare", "Ours:HL", "--bootstrap", "200",
                        "--output-dir", str(out)]) == 0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "scored on 2 benchmarks" in markdown and "benchmarks resampled, then runs within each benchmark" in markdown
    rows = _read_csv(out / "report.csv")
    assert [r["benchmark"] for r in rows if r["group"] == "All" and r["model"] == "HL"] == ["B1", "B1", "B2", "B2"]
    # the All row's HL MRR spread: sd of the two benchmark means / pooled sd of the seeds within them
    per_bench = {b: [_group(values[("HL", b, s)], "MRR", LANGS) for s in (1, 2)] for b in (1, 2)}
    between = stdev([mean(v) for v in per_bench.values()])
    within = (mean(stdev(v) ** 2 for v in per_bench.values())) ** 0.5
    table = markdown[markdown.index("split by level"):]
    all_row = [c.strip() for c in next(line for line in table.splitlines() if line.startswith("| All |")).split("|")]
    header = [c.strip() for c in next(line for line in table.splitlines() if line.startswith("| group |")).split("|")]
    assert all_row[header.index("HL MRR")] == f"{between:.3f} / {within:.3f}"
    mrr = next(r for r in _read_csv(out / "report_compare.csv") if (r["group"], r["metric"]) == ("All", "MRR"))
    assert float(mrr["difference"]) == pytest.approx(0.2, abs=0.03) and mrr["excludes_zero"] == "true"


def test_unpaired_benchmarks_and_other_differences_are_still_refused(tmp_path, capsys):
    _two_benchmarks(tmp_path)
    # as many runs each, but HL's are both on benchmark 1 and Ours's on benchmarks 1 and 2
    runs = [("HL", "b1", "s1"), ("HL", "b1", "s2"), ("Ours", "b1", "s1"), ("Ours", "b2", "s1")]
    kept = [f"--model={name}={tmp_path / bench / seed / name}" for name, bench, seed in runs]
    assert report.main(["--no-plot", *kept, "--across-benchmarks", "--compare", "Ours:HL",
                        "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scored on different benchmarks" in err and not (tmp_path / "o").exists()
    # another setting than the benchmark's (the probe's epochs) is refused across benchmarks too
    argv, _ = _two_benchmarks(tmp_path / "second")
    probe = tmp_path / "second" / "b2" / "s1" / "HL" / "probe.json"
    probe.write_text(probe.read_text(encoding="utf-8").replace('"epochs": 3', '"epochs": 4'), encoding="utf-8")
    assert report.main(["--no-plot", *argv, "--across-benchmarks", "--output-dir", str(tmp_path / "o")]) == 2
    assert "training.epochs is 3" in capsys.readouterr().err
    assert report.main(["--no-plot", *argv, "--across-benchmarks", "--allow-mixed", "--output-dir",
                        str(tmp_path / "o")]) == 2
    assert "do not go together" in capsys.readouterr().err


def test_a_probes_only_control_joins_the_benchmark_whose_probe_data_it_shares(tmp_path):
    import json

    argv, _ = _two_benchmarks(tmp_path)
    for bench, masking_seed in ((1, 1), (2, 7)):
        for s in (1, 2):
            control = tmp_path / f"b{bench}" / f"s{s}" / "Control"
            write_run(control, seed=50 + s, masking_seed=masking_seed)
            os.remove(control / "lm.json")  # the untrained control is only probed
            argv += ["--model", f"Control={control}"]
            for name in ("HL", "Ours", "Control"):  # balkd-probe records each task's probe data hash
                probe = tmp_path / f"b{bench}" / f"s{s}" / name / "probe.json"
                payload = json.loads(probe.read_text(encoding="utf-8"))
                for block in payload["tasks"].values():
                    block["data_sha256"] = f"probe data of benchmark {bench}"
                probe.write_text(json.dumps(payload), encoding="utf-8")
    out = tmp_path / "o"
    assert report.main(["--no-plot", *argv, "--across-benchmarks", "--compare", "Ours:Control", "--bootstrap", "50",
                        "--output-dir", str(out)]) == 0
    rows = [r for r in _read_csv(out / "report.csv") if r["group"] == "All"]
    assert [r["benchmark"] for r in rows if r["model"] == "Control"] == ["B1", "B1", "B2", "B2"]
    assert "scored on 2 benchmarks" in (out / "report.md").read_text(encoding="utf-8")


def test_a_benchmark_drawn_twice_gets_two_independent_inner_resamples():
    """Two copies of one benchmark: a replicate is the mean of two inner resamples, whose variance is half of
    one's if they are independent (interval 1/sqrt(2) as wide as one benchmark's), and 3/4 of it if a benchmark
    drawn twice reused one resample (drawn twice half the time: 1/2 * 1 + 1/2 * 1/2)."""
    rng = np.random.default_rng(8)
    b = [rng.normal(0.0, 1.0, 300) for _ in range(2)]
    a = [x + 0.2 + rng.normal(0, 1.0, 300) for x in b]
    one = ([_lang(a)], [_lang(b)])
    single = bootstrap.paired_bootstrap(*one, False, 4000, seed=6)
    twice = bootstrap.paired_bootstrap_levels([one, one], False, 4000, seed=6)
    ratio = (twice.high - twice.low) / (single.high - single.low)
    assert ratio == pytest.approx(0.5 ** 0.5, abs=0.05)


def _runs(**settings_by_label):
    from balkd_fairseq.eval.report_runs import Model, Run

    return [Model("M", [Run(label, settings={"lm": dict(s)}) for label, s in settings_by_label.items()])]


def test_benchmarks_do_not_depend_on_the_order_of_the_runs_and_an_ambiguous_run_is_an_error():
    from balkd_fairseq.errors import BalkdError
    from balkd_fairseq.eval.report_runs import assign_benchmarks

    b, c, d = {"masking.seed": 1, "data_sha256[x]": "p"}, {"masking.seed": 1, "data_sha256[x]": "q"}, {"data_sha256[x]": "p"}
    for order in (dict(B=b, C=c, D=d), dict(D=d, C=c, B=b)):
        models = _runs(**order)
        assign_benchmarks(models)
        by_label = {run.label: run.benchmark for run in models[0].runs}
        assert by_label["D"] == by_label["B"] != by_label["C"]
    # A records only the mask seed, which both benchmarks share: which one it was scored on is unknown
    with pytest.raises(BalkdError, match=r"^A: cannot tell which benchmark .* match 2 benchmarks"):
        assign_benchmarks(_runs(A={"masking.seed": 1}, B=b, C=c))
    # benchmarks that record different settings: a run recording one of them joins the benchmark that has it
    e = {"masking.seed": 3, "data_sha256[y]": "r"}
    models = _runs(B=b, E=e, F={"data_sha256[y]": "r"})
    assign_benchmarks(models)
    assert [run.benchmark for run in models[0].runs] == ["B1", "B2", "B2"]
    # a run from before the hashes joins the one benchmark there is, even when given first
    models = _runs(old={}, B=b)
    assert assign_benchmarks(models) == ["B1"] and {run.benchmark for run in models[0].runs} == {"B1"}
    with pytest.raises(BalkdError, match=r"^old: cannot tell"):
        assign_benchmarks(_runs(old={}, B=b, C=c))
