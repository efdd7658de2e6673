"""MRR / accuracy@1 / MLM-PPL / PPPL: hand-computed cases and balkd-eval-lm end to end."""
import json
import math
import os
from pathlib import Path

import pytest
import torch
from _tiny_models import tiny_project

import balkd_fairseq  # noqa: F401  (registers the plugin, checkpoint allowlist)
from balkd_fairseq.cli import eval_lm
from balkd_fairseq.eval.masked_lm_eval import scored_positions
from balkd_fairseq.eval.mrr import MaskedLMScores, gold_ranks

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
    import hashlib

    import numpy as np

    from balkd_fairseq.eval.item_scores import read_items

    assert _run(project, tmp_path / "big", "--max-tokens", "4096", "--pppl") == 0
    table = capsys.readouterr().out
    assert "| A | aa |" in table and "| B | bb |" in table and "MLM-PPL | PPPL |" in table
    a, b = _load(tmp_path / "big", "A"), _load(tmp_path / "big", "B")
    assert set(a["languages"]) == {"aa", "bb"}
    items = read_items(os.path.join(tmp_path, "big", "A", "lm_items.npz"))
    for lang, s in a["languages"].items():
        assert s["n_masked"] > 0
        assert 0 <= s["acc1"] <= s["mrr"] <= 1 and s["mrr"] > 0
        assert s["mlm_ppl"] >= 1 and s["pppl"] >= 1
        assert b["languages"][lang] == s  # same checkpoint, same masks -> same numbers
        # the per-item scores are the JSON numbers' items
        assert items[f"{lang}/rr"].shape == (s["n_masked"],)
        assert float(items[f"{lang}/rr"].astype(float).mean()) == pytest.approx(s["mrr"], rel=1e-5)
        assert math.exp(items[f"{lang}/nll"].astype(float).mean()) == pytest.approx(s["mlm_ppl"], rel=1e-5)
        pppl_total = items[f"{lang}/pppl_nll"].astype(float).sum() / items[f"{lang}/pppl_count"].sum()
        assert math.exp(pppl_total) == pytest.approx(s["pppl"], rel=1e-5)
        assert len(items[f"{lang}/pppl_count"]) == s["pppl_sentences"] == 40  # one item per test line
        prefix = os.path.join(project.data, lang, "test")
        for ext in ("bin", "idx"):
            with open(f"{prefix}.{ext}", "rb") as f:
                assert a["data_sha256"][lang][ext] == hashlib.sha256(f.read()).hexdigest()
    assert a["dictionary_sha256"]
    # Batching must not change masks or scores: one block per forward pass gives the same result.
    assert _run(project, tmp_path / "small", "--max-tokens", "64", checkpoints=("A",)) == 0
    small = _load(tmp_path / "small", "A")
    for lang, s in a["languages"].items():
        t = small["languages"][lang]
        assert t["mask_sha256"] == s["mask_sha256"] and t["n_masked"] == s["n_masked"]
        assert t["mrr"] == pytest.approx(s["mrr"], abs=1e-6)
        assert t["mlm_ppl"] == pytest.approx(s["mlm_ppl"], rel=1e-5)
        assert "pppl" not in t
    small_items = read_items(os.path.join(tmp_path, "small", "A", "lm_items.npz"))
    assert np.allclose(small_items["aa/nll"], items["aa/nll"], rtol=1e-4)  # same items in the same order
    # Another seed gives other masks.
    assert _run(project, tmp_path / "seed2", "--seed", "2", checkpoints=("A",)) == 0
    assert _load(tmp_path / "seed2", "A")["languages"]["aa"]["mask_sha256"] != a["languages"]["aa"]["mask_sha256"]


@pytest.mark.slow
def test_eval_lm_refuses_data_with_another_dictionary(project, tmp_path, capsys):
    import shutil

    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    checkpoint = shutil.copy(project.checkpoint, ckpt_dir / "checkpoint.pt")
    shutil.copy(os.path.join(project.data, "dict.txt"), ckpt_dir / "dict.txt")  # the checkpoint's dictionary
    other = tmp_path / "OTHER"
    shutil.copytree(project.data, other)
    lines = (other / "dict.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]  # same size, two symbols swapped
    (other / "dict.txt").write_text("".join(lines), encoding="utf-8")
    argv = [f"--checkpoint=A={checkpoint}", "--data", str(other), "--output-dir", str(tmp_path / "out"),
            "--tokens-per-sample", "64", "--cpu"]
    assert eval_lm.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("balkd-fairseq: error:") and err.count("\n") == 1
    assert str(other / "dict.txt") in err and str(ckpt_dir / "dict.txt") in err
    assert f"first difference at symbol {4 + 3}" in err and repr(lines[3].split()[0]) in err
    assert not os.path.exists(tmp_path / "out")


def test_eval_lm_refuses_a_diverged_model_instead_of_scoring_it_mrr_1(project, tmp_path, capsys):
    # no logit is strictly above a NaN gold logit: every rank would be 1
    state = torch.load(project.checkpoint, weights_only=False)
    key = next(k for k in state["model"] if k.endswith("fc2.weight"))
    state["model"][key][:] = float("nan")
    diverged = tmp_path / "diverged.pt"
    torch.save(state, diverged)
    argv = [f"--checkpoint=D={diverged}", "--data", project.data, "--languages", "aa", "--output-dir",
            str(tmp_path / "out"), "--tokens-per-sample", "64", "--cpu"]
    assert eval_lm.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--checkpoint D ({diverged}), aa test: the model's logits are not finite" in err, err
    assert not os.path.exists(tmp_path / "out")


def test_results_of_an_earlier_version_of_the_same_checkpoint_file_are_not_replaced(project, tmp_path, capsys):
    # checkpoint_last.pt trained further under the same NAME: say so, rather than "another checkpoint"
    import shutil

    checkpoint = Path(shutil.copy(project.checkpoint, tmp_path / "checkpoint_last.pt"))
    argv = [f"--checkpoint=M={checkpoint}", "--data", project.data, "--languages", "aa", "--output-dir",
            str(tmp_path / "out"), "--tokens-per-sample", "64", "--max-samples", "4", "--cpu"]
    assert eval_lm.main(argv) == 0
    before = (tmp_path / "out" / "M" / "lm.json").read_bytes()
    state = torch.load(checkpoint, weights_only=False)
    key = next(k for k in state["model"] if k.endswith("fc2.weight"))
    state["model"][key] += 0.01
    torch.save(state, checkpoint)
    capsys.readouterr()
    assert eval_lm.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "lm.json holds results of an earlier version of this checkpoint file (it changed since)" in err, err
    assert (tmp_path / "out" / "M" / "lm.json").read_bytes() == before


def test_pppl_refuses_non_finite_logits_too():
    # the masked scoring refuses first in balkd-eval-lm; pseudo-perplexity has its own check for a direct caller
    from fairseq.data import Dictionary

    from balkd_fairseq.eval import pppl
    from balkd_fairseq.eval.mrr import NonFiniteLogits

    dictionary = Dictionary()
    for symbol in ("a", "b", "<mask>"):
        dictionary.add_symbol(symbol)

    class Diverged(torch.nn.Module):
        def forward(self, src, masked_tokens):
            return (torch.full((int(masked_tokens.sum()), len(dictionary)), float("nan")),)

    sentence = torch.tensor([dictionary.bos(), dictionary.index("a"), dictionary.index("b"), dictionary.eos()])
    with pytest.raises(NonFiniteLogits, match="not finite"):
        pppl.score_sentences(Diverged(), [sentence], dictionary, max_tokens=64, device="cpu")


@pytest.mark.slow
def test_eval_lm_counts_unknown_targets_and_warns_about_a_language_the_vocabulary_does_not_cover(
        project, tmp_path, capsys):
    """<unk> targets are easy to predict, so a script the vocabulary never saw would get the best MRR unannounced."""
    import shutil

    from fairseq.data import Dictionary
    from helpers import write_split

    data = Path(shutil.copytree(project.data, tmp_path / "data"))
    dictionary = Dictionary.load(str(data / "dict.txt"))
    known = [dictionary[i] for i in range(dictionary.nspecial, dictionary.nspecial + 6)]
    (data / "zz").mkdir()
    write_split(dictionary, [["дом", "город", known[k % 6], "кошка"] * 3 for k in range(40)], str(data / "zz" / "test"))
    argv = ["--checkpoint", f"A={project.checkpoint}", "--data", str(data), "--output-dir", str(tmp_path / "out"),
            "--languages", "aa,zz", "--tokens-per-sample", "64", "--cpu"]
    assert eval_lm.main(argv) == 0
    scores = _load(tmp_path / "out", "A")["languages"]
    assert scores["aa"]["n_unknown"] == 0 and 0.6 < scores["zz"]["n_unknown"] / scores["zz"]["n_masked"] < 0.9
    warned = [line for line in capsys.readouterr().err.splitlines() if "are <unk>" in line]
    assert len(warned) == 1 and "WARNING" in warned[0] and "A zz: " in warned[0], warned


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


# ---------------------------------------------------------------- pseudo-perplexity (one token masked at a time)
def _random_roberta(dictionary, max_positions):
    """A 2-layer RoBERTa with random weights (no training needed to check the scoring arithmetic)."""
    import argparse

    from fairseq.models.roberta import RobertaModel, base_architecture

    class Task:
        source_dictionary = target_dictionary = dictionary

    args = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                              encoder_attention_heads=2, max_positions=max_positions)
    base_architecture(args)
    torch.manual_seed(0)
    return RobertaModel.build_model(args, Task()).eval()


def _toy_dictionary():
    from fairseq.data import Dictionary

    d = Dictionary()
    for i in range(30):
        d.add_symbol(f"w{i}")
    d.add_symbol("<mask>")
    return d


def _direct_pppl(model, sentence, d, window):
    """Sum of NLLs, one forward pass per token, each window of ``window`` tokens scored on its own."""
    total, count = 0.0, 0
    for start in range(0, len(sentence), window):
        src = torch.cat([torch.tensor([d.bos()]), sentence[start:start + window]])
        for p in range(1, len(src)):
            if int(src[p]) in (d.bos(), d.eos(), d.pad()):
                continue
            masked = src.clone()
            masked[p] = d.index("<mask>")
            with torch.no_grad():
                logits = model(masked.unsqueeze(0))[0][0, p]
            total -= float(torch.log_softmax(logits.double(), -1)[src[p]])
            count += 1
    return total, count


def _sentences(d, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    first = d.nspecial
    return [torch.cat([torch.randint(first, first + 30, (n,), generator=g), torch.tensor([d.eos()])]) for n in lengths]


@pytest.mark.parametrize("max_tokens", [1, 200])  # one masked copy per forward pass, or many sentences per batch
def test_pppl_matches_one_position_at_a_time(max_tokens):
    from balkd_fairseq.eval import pppl

    d = _toy_dictionary()
    model = _random_roberta(d, max_positions=32)
    sentences = _sentences(d, [5, 1, 9, 3, 0])  # 0: a line holding only </s> scores nothing
    nll, count = pppl.score_sentences(model, sentences, d, max_tokens, "cpu")
    for i, sentence in enumerate(sentences):
        expected, n = _direct_pppl(model, sentence, d, window=10 ** 6)
        assert count[i] == n == len(sentence) - 1
        assert nll[i] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert pppl.summary(nll, count)["pppl"] == pytest.approx(math.exp(nll.sum() / count.sum()))


def test_pppl_scores_a_sentence_longer_than_the_model_in_windows():
    from balkd_fairseq.eval import pppl

    d = _toy_dictionary()
    model = _random_roberta(d, max_positions=8)  # windows of 7 tokens after <s>
    long_sentence, short_sentence = _sentences(d, [16, 4], seed=1)
    nll, count = pppl.score_sentences(model, [long_sentence, short_sentence], d, 64, "cpu")
    expected, n = _direct_pppl(model, long_sentence, d, window=7)
    assert (count[0], n) == (16, 16) and nll[0] == pytest.approx(expected, rel=1e-5)
    assert [len(w) for w in pppl.sentence_windows(long_sentence, 8)] == [7, 7, 3]
    assert nll[1] == pytest.approx(_direct_pppl(model, short_sentence, d, window=7)[0], rel=1e-5)


# ---------------------------------------------------------------- the checkpoint's dictionary
def _write_dict(path, symbols):
    path.write_text("".join(f"{s} 1\n" for s in symbols), encoding="utf-8")
    return str(path)


def test_dictionary_check_names_both_files_and_the_first_differing_symbol(tmp_path):
    from balkd_fairseq.data.dictionary_check import EMBED_KEY, check_checkpoint_dictionary
    from balkd_fairseq.data.dictionary_hash import dictionary_sha256, load_model_dictionary
    from balkd_fairseq.errors import BalkdError

    (tmp_path / "ckpt").mkdir()
    checkpoint = str(tmp_path / "ckpt" / "checkpoint_best.pt")
    own = _write_dict(tmp_path / "ckpt" / "dict.txt", ["a", "b", "c"])
    same = _write_dict(tmp_path / "same.txt", ["a", "b", "c"])
    swapped = _write_dict(tmp_path / "swapped.txt", ["a", "c", "b"])  # same size: only symbols tell
    rows = {"model": {EMBED_KEY: torch.zeros(len(load_model_dictionary(own)), 4)}}
    recorded = {**rows, "task_state": {"dictionary_sha256": dictionary_sha256(load_model_dictionary(own))}}
    for state in (rows, recorded):
        check_checkpoint_dictionary(state, checkpoint, same)
        with pytest.raises(BalkdError) as err:
            check_checkpoint_dictionary(state, checkpoint, swapped)
        message = str(err.value)
        assert swapped in message and own in message and "'b'" in message and "'c'" in message
    os.remove(own)  # an old checkpoint, nothing beside it: the size still has to match
    bigger = _write_dict(tmp_path / "bigger.txt", ["a", "b", "c", "d"])
    with pytest.raises(BalkdError, match="embeds 8 symbols, .*bigger.txt gives 9"):
        check_checkpoint_dictionary(rows, checkpoint, bigger)
    with pytest.raises(BalkdError, match="recorded dictionary sha256"):
        check_checkpoint_dictionary(recorded, checkpoint, swapped)
