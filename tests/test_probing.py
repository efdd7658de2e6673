"""Probing: metrics, the train x test matrix, the criterion, the frozen encoder, fairseq-train and balkd-probe."""
import argparse
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import balkd_fairseq  # noqa: F401  (registers token_probing, linear_probe, mlp_probe)
from balkd_fairseq.cli import probe as probe_cli
from balkd_fairseq.criterions.token_probing import TokenProbingCriterion
from balkd_fairseq.data.subword_alignment import IGNORE_INDEX
from balkd_fairseq.eval import probing_matrix
from balkd_fairseq.eval.probing_data import LabelSet
from balkd_fairseq.eval.tagging_metrics import ner_f1, pos_accuracy
from balkd_fairseq.models.probes import TokenProbeModel, linear_probe, mlp_probe
from balkd_fairseq.tasks.token_probing import TokenProbingConfig, TokenProbingTask

from _tiny_models import PLUGIN, REPO, plugin_env, tiny_project


# ---------------------------------------------------------------- metrics
def test_ner_f1_exact_match():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert ner_f1(gold, gold) == 1.0


def test_ner_f1_partial_span_is_wrong():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # PER span cut short: 1 of 2 predicted and 1 of 2 gold entities right
    assert ner_f1(gold, pred) == pytest.approx(0.5)


def test_ner_f1_mislabeled_span_is_wrong():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG"]]
    pred = [["B-LOC", "I-LOC", "O", "B-LOC"], ["B-ORG"]]  # P = 2/3, R = 2/3
    assert ner_f1(gold, pred) == pytest.approx(2 / 3)


def test_ner_f1_strict_iob2_needs_b_to_open_an_entity():
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]  # lenient conlleval would accept this span; strict IOB2 does not
    assert ner_f1(gold, pred) == 0.0


def test_ner_f1_extra_entity_lowers_precision_and_cut_words_count_as_o():
    gold = [["B-PER", "O", "O"], ["B-LOC"]]
    pred = [["B-PER", "O", "B-MISC"], [None]]  # P = 1/2, R = 1/2
    assert ner_f1(gold, pred) == pytest.approx(0.5)


def test_pos_accuracy_counts_unseen_and_cut_words_as_errors():
    gold = [["NOUN", "VERB", "X"], ["DET"]]  # X never seen in training
    pred = [["NOUN", "NOUN", "NOUN"], [None]]
    assert pos_accuracy(gold, pred) == pytest.approx(1 / 4)


def test_label_set_maps_unseen_labels_past_the_classifier():
    labels = LabelSet(["B", "A"])
    assert labels.ids(["A", "B", "Z"]) == [1, 0, 2] and labels.unseen_id == 2


# ---------------------------------------------------------------- matrix
def test_matrix_in_language_and_zero_shot_arithmetic():
    langs = ["de", "en", "tr"]
    m = {
        "de": {"de": 0.9, "en": 0.5, "tr": 0.2},
        "en": {"de": 0.4, "en": 0.8, "tr": 0.3},
        "tr": {"de": 0.1, "en": 0.6, "tr": 0.7},
    }
    summary = probing_matrix.summarize(m, langs)
    assert list(summary["matrix"]) == langs and all(list(row) == langs for row in summary["matrix"].values())
    assert summary["in_language"] == {"de": 0.9, "en": 0.8, "tr": 0.7}
    assert summary["zero_shot"] == pytest.approx({"de": (0.4 + 0.1) / 2, "en": (0.5 + 0.6) / 2, "tr": (0.2 + 0.3) / 2})


def test_matrix_single_language_has_no_zero_shot_and_incomplete_rows_fail():
    assert probing_matrix.zero_shot({"de": {"de": 0.5}}, ["de"]) == {"de": None}
    with pytest.raises(ValueError, match="en"):
        probing_matrix.in_language({"de": {"de": 0.5, "en": 0.1}}, ["de", "en"])


# ---------------------------------------------------------------- criterion
class _FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, **unused):
        return self.logits

    def get_targets(self, sample, net_output):
        return sample["target"]


def test_criterion_scores_unseen_gold_as_error_and_skips_ignored_positions():
    logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 5.0]]])  # predictions 0, 1, 0, 1
    target = torch.tensor([[0, 0, 2, IGNORE_INDEX]])  # right, wrong, unseen label (id 2 = no output), ignored
    criterion = TokenProbingCriterion(SimpleNamespace(target_dictionary=None))
    sample = {"net_input": {}, "target": target, "ntokens": 3, "nsentences": 1}
    loss, sample_size, log = criterion(_FixedLogits(logits), sample)
    expected = torch.nn.functional.cross_entropy(logits[0, :2], target[0, :2], reduction="sum")
    assert sample_size == 2 and log["nlabelled"] == 3 and int(log["ncorrect"]) == 1
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()  # no crash on the unseen label


# ---------------------------------------------------------------- frozen encoder, in process
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _task(project, **overrides):
    cfg = TokenProbingConfig(
        data=os.path.join(project.probe_dir, "pos", "aa"), pretrained=project.checkpoint,
        pretrained_data=project.data, seed=1, **overrides,
    )
    return TokenProbingTask.setup_task(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("arch, cached", [(linear_probe, True), (mlp_probe, False)])
def test_probe_training_leaves_encoder_bit_identical(project, arch, cached):
    task = _task(project, no_feature_cache=not cached)
    args = argparse.Namespace(probe_hidden_dim=8)
    arch(args)
    model = TokenProbeModel.build_model(args, task)
    encoder = task.frozen_encoder.model
    before = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    encoder_params = {id(p) for p in encoder.parameters()}
    assert not encoder_params & {id(p) for p in model.parameters()}
    assert all(k.startswith("head.") for k in model.state_dict())

    criterion = TokenProbingCriterion(task)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    task.load_dataset("train")
    losses = []
    for epoch in range(1, 4):
        itr = task.get_batch_iterator(task.dataset("train"), max_sentences=16, seed=1, epoch=epoch)
        for sample in itr.next_epoch_itr(shuffle=True):
            model.train()
            optimizer.zero_grad()
            loss, sample_size, _ = criterion(model, sample)
            (loss / sample_size).backward()
            optimizer.step()
            losses.append(loss.item() / sample_size)

    assert sum(losses[-3:]) < sum(losses[:3])  # the probe did train
    assert all(p.grad is None for p in encoder.parameters())
    after = encoder.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_layer_out_of_range_is_a_clear_error(project):
    with pytest.raises(balkd_fairseq.BalkdError, match="--probe-layer 7 is out of range"):
        _task(project, probe_layer=7)


# ---------------------------------------------------------------- the fairseq-train path
def _fairseq(module, *argv):
    cmd = [sys.executable, "-m", module, *argv, "--user-dir", PLUGIN, "--cpu", "--num-workers", "0"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=plugin_env())


def _accuracy(log, subset):
    found = re.findall(rf"valid on '{subset}' subset \| loss [\d.]+ \| accuracy ([\d.]+)", log)
    assert found, log[-3000:]
    return float(found[-1])


@pytest.mark.slow
def test_fairseq_train_linear_probe_then_validate_zero_shot(project, tmp_path):
    data = os.path.join(project.probe_dir, "pos", "aa")
    save = str(tmp_path / "probe")
    train = _fairseq(
        "fairseq_cli.train", data, "--task", "token_probing", "--pretrained", project.checkpoint,
        "--pretrained-data", project.data, "--arch", "linear_probe", "--criterion", "token_probing",
        "--optimizer", "adam", "--lr", "1e-2", "--batch-size", "16", "--max-epoch", "8",
        "--save-dir", save, "--no-epoch-checkpoints", "--log-format", "simple",
        "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert _accuracy(train.stdout + train.stderr, "valid") > 95.0
    state = torch.load(os.path.join(save, "checkpoint_best.pt"))
    assert sorted(state["model"]) == ["head.1.bias", "head.1.weight"]  # the encoder is not in the probe

    validate = _fairseq(
        "fairseq_cli.validate", data, "--task", "token_probing", "--path", os.path.join(save, "checkpoint_best.pt"),
        "--valid-subset", "test,test_bb", "--batch-size", "16",
    )
    assert validate.returncode == 0, validate.stderr[-3000:]
    log = validate.stdout + validate.stderr
    assert _accuracy(log, "test") > 95.0
    assert 0.0 <= _accuracy(log, "test_bb") <= 100.0


# ---------------------------------------------------------------- balkd-probe
def _probe_argv(project, out, *extra):
    return [
        "--checkpoint", f"tiny={project.checkpoint}", "--data", project.data, "--languages", "aa,bb",
        "--probe-dir", project.probe_dir, "--output-dir", str(out), "--cpu", *extra,
    ]


@pytest.mark.slow
def test_balkd_probe_matrix_and_easy_task_accuracy(project, tmp_path, capsys):
    assert probe_cli.main(_probe_argv(project, tmp_path, "--epochs", "30", "--lr", "1e-2")) == 0
    assert "| pos | aa |" in capsys.readouterr().out
    with open(tmp_path / "tiny" / "probe.json", encoding="utf-8") as f:
        result = json.load(f)
    assert result["layer"] == result["num_layers"] == 2
    for task, metric in (("pos", "accuracy"), ("ner", "f1")):
        block = result["tasks"][task]
        assert block["metric"] == metric
        m = block["matrix"]
        assert sorted(m) == ["aa", "bb"] and all(sorted(row) == ["aa", "bb"] for row in m.values())
        assert block["in_language"] == {"aa": m["aa"]["aa"], "bb": m["bb"]["bb"]}
        assert block["zero_shot"] == {"aa": m["bb"]["aa"], "bb": m["aa"]["bb"]}
        # The synthetic tags follow from the words: the probes must learn them in-language.
        assert min(block["in_language"].values()) > 0.95, (task, block["in_language"])


@pytest.mark.slow
def test_balkd_probe_missing_file_is_one_clear_error(project, tmp_path, capsys):
    argv = _probe_argv(project, tmp_path, "--ner-dir", str(tmp_path / "nowhere"))
    assert probe_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "train.iob2" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "tiny")
