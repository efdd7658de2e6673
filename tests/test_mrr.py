"""MRR / accuracy@1 / MLM-PPL / PPPL: hand-computed cases and balkd-eval-lm end to end."""
import json
import math
import os

import pytest
import torch

import balkd_fairseq  # noqa: F401  (registers the plugin, checkpoint allowlist)
from balkd_fairseq.cli import eval_lm
from balkd_fairseq.eval.masked_lm_eval import scored_positions
from balkd_fairseq.eval.mrr import MaskedLMScores, gold_ranks

from _tiny_models import tiny_project

LOGITS = [
    [1.0, 3.0, 3.0, 0.0],
    [1.0, 3.0, 3.0, 0.0],
    [1.0, 3.0, 3.0, 0.0],
    [5.0, -1.0, 2.0, 2.0],
]
GOLD = [1, 0, 3, 0]
# rank = 1 + #strictly higher logits: gold 1 ties with entry 2 -> 1; gold 0 -> 3; gold 3 -> 4; gold 0 -> 1
HAND_RANKS = [1, 3, 4, 1]


def test_gold_rank_counts_only_strictly_higher_logits():
    ranks = gold_ranks(torch.tensor(LOGITS), torch.tensor(GOLD))
    assert ranks.tolist() == HAND_RANKS


def test_all_tied_logits_give_rank_one():
    assert gold_ranks(torch.zeros(2, 5), torch.tensor([0, 4])).tolist() == [1, 1]


def _cross_entropy(row, gold):
    return math.log(sum(math.exp(x) for x in row)) - row[gold]


def test_summary_matches_hand_computation():
    scores = MaskedLMScores()
    scores.add(torch.tensor(LOGITS[:2]), torch.tensor(GOLD[:2]))  # two batches accumulate
    scores.add(torch.tensor(LOGITS[2:]), torch.tensor(GOLD[2:]))
    summary = scores.summary()
    assert summary["n_masked"] == 4
    assert summary["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 4 + 1) / 4)
    assert summary["acc1"] == pytest.approx(2 / 4)
    mean_ce = sum(_cross_entropy(row, g) for row, g in zip(LOGITS, GOLD)) / 4
    assert summary["mlm_ppl"] == pytest.approx(math.exp(mean_ce), rel=1e-5)


def test_no_masked_positions_gives_no_scores():
    scores = MaskedLMScores()
    scores.add(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert scores.summary() == {"n_masked": 0, "mrr": None, "acc1": None, "mlm_ppl": None}


def test_special_tokens_never_scored():
    from fairseq.data import Dictionary

    d = Dictionary()
    word = d.add_symbol("x")
    target = torch.tensor([[d.bos(), word, d.pad(), d.eos()], [word, d.pad(), word, d.pad()]])
    assert scored_positions(target, d).tolist() == [[False, True, False, False], [True, False, True, False]]


# ---------------------------------------------------------------- balkd-eval-lm end to end
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _run(project, out, *extra, checkpoints=("A", "B")):
    argv = [f"--checkpoint={name}={project.checkpoint}" for name in checkpoints]
    argv += ["--data", project.data, "--output-dir", str(out), "--tokens-per-sample", "64", "--cpu", *extra]
    return eval_lm.main(argv)


def _load(out, name):
    with open(os.path.join(out, name, "lm.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.slow
def test_eval_lm_scores_every_language_on_identical_masks(project, tmp_path, capsys):
    assert _run(project, tmp_path / "big", "--max-tokens", "4096") == 0
    table = capsys.readouterr().out
    assert "| A | aa |" in table and "| B | bb |" in table
    a, b = _load(tmp_path / "big", "A"), _load(tmp_path / "big", "B")
    assert set(a["languages"]) == {"aa", "bb"}
    for lang, s in a["languages"].items():
        assert s["n_masked"] > 0
        assert 0 <= s["acc1"] <= s["mrr"] <= 1 and s["mrr"] > 0
        assert s["mlm_ppl"] >= 1
        assert b["languages"][lang] == s  # same checkpoint, same masks -> same numbers
    # Batching must not change masks or scores: one block per forward pass gives the same result.
    assert _run(project, tmp_path / "small", "--max-tokens", "64", checkpoints=("A",)) == 0
    small = _load(tmp_path / "small", "A")
    for lang, s in a["languages"].items():
        t = small["languages"][lang]
        assert t["mask_sha256"] == s["mask_sha256"] and t["n_masked"] == s["n_masked"]
        assert t["mrr"] == pytest.approx(s["mrr"], abs=1e-6)
        assert t["mlm_ppl"] == pytest.approx(s["mlm_ppl"], rel=1e-5)
    # Another seed gives other masks.
    assert _run(project, tmp_path / "seed2", "--seed", "2", checkpoints=("A",)) == 0
    assert _load(tmp_path / "seed2", "A")["languages"]["aa"]["mask_sha256"] != a["languages"]["aa"]["mask_sha256"]


@pytest.mark.slow
def test_eval_lm_rejects_bad_input_without_writing(project, tmp_path, capsys):
    assert _run(project, tmp_path, "--languages", "aa,zz") == 2
    err = capsys.readouterr().err
    assert "zz" in err and "test" in err and "Traceback" not in err
    assert _run(project, tmp_path, "--tokens-per-sample", "512") == 2  # argparse keeps the last value
    assert "at most 64 positions" in capsys.readouterr().err
    assert _run(project, tmp_path, "--mask-prob", "1.5") == 2
    assert "--mask-prob" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "A")
