"""The distillation loss against hand computations, routing by language, logging keys."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from fairseq import metrics
from fairseq.data import Dictionary

from balkd_fairseq.criterions.multi_teacher_distill import MultiTeacherDistillConfig, MultiTeacherDistillCriterion
from balkd_fairseq.data.mask_origin import SampleAddress
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.soft_labels.manifest import TeacherRecord
from balkd_fairseq.soft_labels.online import TeacherSet

VOCAB = 9  # 4 special symbols + 5 words


class TableLM(nn.Module):
    """A 'masked LM' whose logits at a position depend only on the input token there."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(table.clone())
        self.calls = 0

    def forward(self, src_tokens, masked_tokens=None, **unused):
        self.calls += 1
        logits = self.table[src_tokens]
        return (logits[masked_tokens] if masked_tokens is not None else logits), {}


def dictionary():
    d = Dictionary()
    for i in range(VOCAB - 4):
        d.add_symbol(f"w{i}")
    return d


def make_criterion(teachers, languages=("aa", "bb"), **cfg):
    records = [TeacherRecord(lang, f"/{lang}.pt", "0", "0") for lang in languages]
    teacher_set = TeacherSet(dict(enumerate(teachers)), records, vocab_size=VOCAB, sample_address=address)
    task = SimpleNamespace(languages=list(languages), target_dictionary=dictionary(), build_soft_label_source=lambda: teacher_set)
    return MultiTeacherDistillCriterion(MultiTeacherDistillConfig(**cfg), task)


def address(sample):
    return SampleAddress("train", 1, sample["lang_id"], torch.arange(len(sample["lang_id"])))


def make_sample(lang_ids, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (len(lang_ids), 6), generator=gen)
    masked = torch.rand(src.shape, generator=gen) < 0.5
    masked[:, 0] = True  # every row has a masked position
    target = torch.where(masked, torch.randint(4, VOCAB, src.shape, generator=gen), torch.ones_like(src))
    return {
        "net_input": {"src_tokens": src, "src_lengths": torch.full((len(lang_ids),), 6)},
        "target": target, "lang_id": torch.tensor(lang_ids),
        "ntokens": int(src.numel()), "nsentences": len(lang_ids),
    }, masked


def tables(seed, n):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(VOCAB, VOCAB, generator=gen) * 2 for _ in range(n)]


def hand_loss(student, teachers, sample, masked, T=1.0, kind="kl", a=0.0, topk=0, tail=False):
    soft = hard = 0.0
    src, target, langs = sample["net_input"]["src_tokens"], sample["target"], sample["lang_id"]
    for b, l in masked.nonzero().tolist():
        tok = src[b, l]
        t_logits = teachers[langs[b]].table[tok].detach().double()
        s_logits = student.table[tok].detach().double()
        support = list(range(VOCAB))
        if topk and tail:  # the tempered teacher's top-k probabilities, the rest spread evenly over the others
            full = torch.softmax(t_logits / T, -1)
            kept = full.topk(topk).indices
            p = torch.full((VOCAB,), (1 - full[kept].sum().item()) / (VOCAB - topk), dtype=torch.float64)
            p[kept] = full[kept]
        elif topk:
            support = t_logits.topk(topk).indices.tolist()
        if not (topk and tail):
            p = torch.softmax(t_logits[support] / T, -1)
        log_q = torch.log_softmax(s_logits / T, -1)[support]
        cross = -(p * log_q).sum().item()
        entropy = -(p * p.log()).sum().item()
        soft += (cross - entropy if kind == "kl" else cross) * T * T
        hard += -torch.log_softmax(s_logits, -1)[target[b, l]].item()
    return (1 - a) * soft + a * hard if a else soft, soft, hard


@pytest.mark.parametrize("kind,T,a,topk,tail", [
    ("kl", 1.0, 0.0, 0, False), ("ce", 1.0, 0.0, 0, False), ("kl", 2.5, 0.0, 0, False), ("ce", 0.5, 0.3, 0, False),
    ("kl", 2.0, 0.25, 0, False), ("kl", 1.0, 0.0, 3, False),
    ("kl", 1.0, 0.0, 3, True), ("ce", 1.0, 0.0, 2, True), ("kl", 2.0, 0.25, 3, True)])
def test_loss_matches_hand_computation(kind, T, a, topk, tail):
    teacher_tables = tables(1, 2)
    teachers = [TableLM(t) for t in teacher_tables]
    student = TableLM(tables(2, 1)[0])
    crit = make_criterion(teachers, distill_loss=kind, temperature=T, hard_label_weight=a, topk=topk,
                          topk_tail="uniform" if tail else "renormalise")
    sample, masked = make_sample([0, 1, 0, 1, 1])
    loss, sample_size, log = crit(student, sample)
    expected, soft, hard = hand_loss(student, teachers, sample, masked, T, kind, a, topk, tail)
    assert sample_size == int(masked.sum())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert log["distill_loss"].item() == pytest.approx(soft, rel=1e-5)
    assert log["hard_loss"].item() == pytest.approx(hard, rel=1e-5)
    loss.backward()
    assert student.table.grad is not None and all(t.table.grad is None for t in teachers)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_uniform_tail_of_a_flat_tailed_teacher_is_the_full_teacher(T):
    """A teacher whose tokens outside its top-3 are equally likely: top-3 plus the flat tail is exact, while the
    renormalised top-3 is not (the case the tail is for: a student learning that the other tokens never occur)."""
    flat = torch.zeros(VOCAB, VOCAB)
    gen = torch.Generator().manual_seed(7)
    for row in flat:
        row[torch.randperm(VOCAB, generator=gen)[:3]] = torch.tensor([3.0, 2.0, 1.0])
    teachers = [TableLM(flat), TableLM(flat.flip(0))]
    student = TableLM(tables(8, 1)[0])
    sample, _ = make_sample([0, 1, 1, 0], seed=3)
    full = make_criterion(teachers, temperature=T)(student, sample)[0].item()
    with_tail = make_criterion(teachers, temperature=T, topk=3, topk_tail="uniform")(student, sample)[0].item()
    renormalised = make_criterion(teachers, temperature=T, topk=3)(student, sample)[0].item()
    assert with_tail == pytest.approx(full, rel=1e-5)
    assert abs(renormalised - full) > 0.05 * full


def test_teacher_identical_to_student_gives_zero_distill_loss():
    table = tables(3, 1)[0]
    crit = make_criterion([TableLM(table), TableLM(table)], temperature=2.0)
    sample, _ = make_sample([0, 1, 1])
    loss, _, log = crit(TableLM(table), sample)
    assert abs(loss.item()) < 1e-5 and abs(log["distill_loss"].item()) < 1e-5
    assert log["top1_agree"].item() == log["distill_positions"]


def test_each_sample_gets_its_own_languages_teacher():
    # teacher aa always predicts word 4, teacher bb always word 8
    one_hot = [torch.full((VOCAB, VOCAB), -30.0).index_fill_(1, torch.tensor([w]), 30.0) for w in (4, 8)]
    teachers = [TableLM(t) for t in one_hot]
    teacher_set = make_criterion(teachers).soft_labels
    sample, masked = make_sample([1, 0, 0, 1, 0, 1], seed=5)
    logits, position_langs = teacher_set.masked_logits(sample["net_input"]["src_tokens"], masked, sample["lang_id"])
    expected_langs = sample["lang_id"].unsqueeze(1).expand_as(masked)[masked]
    assert torch.equal(position_langs, expected_langs)
    assert torch.equal(logits.argmax(-1), torch.where(expected_langs == 0, 4, 8))
    assert [t.calls for t in teachers] == [1, 1]  # one forward per language present, not per sample


def test_absent_language_runs_no_teacher_and_still_logs_its_keys():
    teachers = [TableLM(t) for t in tables(4, 3)]
    crit = make_criterion(teachers, languages=("aa", "bb", "cc"))
    sample, _ = make_sample([0, 0, 2])
    _, _, log = crit(TableLM(tables(5, 1)[0]), sample)
    assert [t.calls for t in teachers] == [1, 0, 1]
    assert log["distill_lang_count"].tolist()[1] == 0 and log["distill_lang_sum"].shape == (3,)
    assert log["distill_lang_count"][0].item() > 0


def test_non_finite_teacher_is_skipped_and_counted():
    bad = tables(6, 1)[0]
    bad[5] = float("nan")
    teachers = [TableLM(tables(7, 1)[0]), TableLM(bad)]
    crit = make_criterion(teachers)
    sample, masked = make_sample([0, 1, 1], seed=2)
    sample["net_input"]["src_tokens"][1:, 0] = 5  # bb rows hit the NaN row
    student = TableLM(tables(8, 1)[0])
    loss, _, log = crit(student, sample)
    assert math.isfinite(loss.item())
    assert log["nonfinite_teacher_batches"] == 1 and log["distill_lang_nonfinite"].tolist() == [0, 1]
    assert log["distill_lang_count"].tolist() == [int(masked[0].sum()), 0]
    assert log["distill_positions"] == int(masked[0].sum())
    loss.backward()  # the skipped teacher's NaN must not reach the student's gradient
    assert torch.isfinite(student.table.grad).all() and student.table.grad.abs().sum() > 0


def reduce(crit, logging_outputs):
    """What the task's reduce_metrics runs: the criterion's summary, then its per-language metrics."""
    with metrics.aggregate() as agg:
        MultiTeacherDistillCriterion.reduce_metrics(logging_outputs)
        crit.reduce_per_language_metrics(logging_outputs)
        return agg.get_smoothed_values()


def test_reduce_metrics_logs_per_language_and_summary():
    crit = make_criterion([TableLM(t) for t in tables(9, 2)])
    student = TableLM(tables(10, 1)[0])
    outs = [crit(student, make_sample(langs, seed=s)[0])[2] for s, langs in enumerate([[0, 0], [1, 0, 1]])]
    # fairseq sums logging outputs key by key (fast_stat_sync_sum: the keys of the first output, in its order,
    # flattened into one buffer per worker): every output must have the same keys, order and shapes
    assert [(k, getattr(v, "shape", None)) for k, v in outs[0].items()] == [(k, getattr(v, "shape", None)) for k, v in outs[1].items()]
    summed = {k: sum(o[k] for o in outs) for k in outs[0]}
    values = reduce(crit, outs)
    assert reduce(crit, [summed])["distill_bb"] == pytest.approx(values["distill_bb"])
    for key in ["loss", "distill_loss", "hard_loss", "teacher_entropy", "top1_agree", "distill_aa", "distill_bb"]:
        assert key in values
    # the per-language means, weighted by their positions, are the overall distill loss
    counts = summed["distill_lang_count"].tolist()
    overall = (values["distill_aa"] * counts[0] + values["distill_bb"] * counts[1]) / sum(counts)
    assert overall == pytest.approx(values["distill_loss"], rel=1e-3)
    assert MultiTeacherDistillCriterion.logging_outputs_can_be_summed()


def test_only_languages_in_the_batch_are_logged():
    crit = make_criterion([TableLM(t) for t in tables(11, 3)], languages=("aa", "bb", "cc"))
    out = crit(TableLM(tables(12, 1)[0]), make_sample([2, 2, 0])[0])[2]
    values = reduce(crit, [out])
    assert "distill_aa" in values and "distill_cc" in values and "distill_bb" not in values


def test_batch_without_masked_positions_gives_zero_loss_reaching_every_parameter():
    crit = make_criterion([TableLM(t) for t in tables(13, 2)])
    student = TableLM(tables(14, 1)[0])
    sample, _ = make_sample([0, 1])
    sample["target"].fill_(1)  # padding everywhere: nothing masked
    loss, sample_size, log = crit(student, sample)
    assert loss.item() == 0 and int(sample_size) == 0 and log["distill_lang_count"].tolist() == [0, 0]
    loss.backward()
    assert student.table.grad is not None


@pytest.mark.parametrize("cfg,flag", [({"temperature": 0.0}, "--temperature"), ({"temperature": -1.0}, "--temperature"),
                                      ({"hard_label_weight": 1.5}, "--hard-label-weight"),
                                      ({"hard_label_weight": -0.1}, "--hard-label-weight")])
def test_bad_hyperparameters_are_rejected(cfg, flag):
    with pytest.raises(BalkdError, match=flag):
        make_criterion([TableLM(t) for t in tables(0, 2)], **cfg)


def test_the_losses_checkpoint_selection_compares_keep_five_decimals():
    # fairseq's --best-checkpoint-metric and --patience read the rounded meter: 0.0834 and 0.0832 must differ
    ln2 = math.log(2)
    outs = [{"loss": 0.08342 * ln2 * 100, "hard_loss": 0.0, "distill_loss": 0.08342 * ln2 * 100, "sample_size": 100,
             "distill_positions": 100, "teacher_entropy": 0.0, "top1_agree": 0.0, "nonfinite_teacher_batches": 0}]
    with metrics.aggregate() as agg:
        MultiTeacherDistillCriterion.reduce_metrics(outs)
        values = agg.get_smoothed_values()
    assert values["loss"] == pytest.approx(0.08342, abs=1e-9)
    assert values["distill_loss"] == pytest.approx(0.08342, abs=1e-9)
