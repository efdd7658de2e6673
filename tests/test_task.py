import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from balkd_fairseq.data.balancing import draw_epoch
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.tasks.balanced_distill import BalancedDistillConfig, BalancedDistillTask
from helpers import make_tiny_data


def make_task(data, **overrides):
    cfg = BalancedDistillConfig(data=str(data), tokens_per_sample=32, seed=1, **overrides)
    return BalancedDistillTask.setup_task(cfg)


def epoch_samples(task, split, epoch, batch_size=4):
    """(lang_id, unmasked token tuple) of every sample, in the order fairseq's iterator yields them."""
    task.load_dataset(split, epoch=epoch)
    itr = task.get_batch_iterator(task.dataset(split), max_sentences=batch_size, seed=1, epoch=epoch,
                                  disable_iterator_cache=True).next_epoch_itr(shuffle=True)
    pad = task.source_dictionary.pad()
    out = []
    for batch in itr:
        original = torch.where(batch["target"].ne(pad), batch["target"], batch["net_input"]["src_tokens"])
        for lang_id, row in zip(batch["lang_id"].tolist(), original):
            out.append((lang_id, tuple(row[row.ne(pad)].tolist())))
    return out


def expected_samples(task, epoch):
    sizes = [len(task.language_blocks("train", lang)) for lang in task.languages]
    draws = draw_epoch(sizes, "subsample", seed=1, epoch=epoch)
    return Counter(
        (lang_id, tuple(task.language_blocks("train", lang)[int(i)].tolist()))
        for lang_id, (lang, idx) in enumerate(zip(task.languages, draws)) for i in idx
    )


def test_languages_default_to_sorted_subdirectories(tiny_data):
    assert make_task(tiny_data).languages == ["aa", "bb"]
    assert make_task(tiny_data, languages="bb").languages == ["bb"]


def test_subsample_is_balanced_and_fixed_by_default(tiny_data):
    task = make_task(tiny_data, balance="subsample")
    first, second = epoch_samples(task, "train", 1), epoch_samples(task, "train", 2)
    smallest = len(task.language_blocks("train", "bb"))
    assert Counter(lang for lang, _ in first) == {0: smallest, 1: smallest}
    # the paper's sub-sampling: one draw for the whole run, the rest of aa is never seen
    assert Counter(first) == Counter(second) == expected_samples(task, 1)
    assert len({s for s in first if s[0] == 0}) < len(task.language_blocks("train", "aa"))
    assert first != second  # ... but every epoch is shuffled afresh


def test_subsample_per_epoch_is_balanced_and_redrawn(tiny_data):
    task = make_task(tiny_data, balance="subsample", balance_draw="per_epoch")
    first, second = epoch_samples(task, "train", 1), epoch_samples(task, "train", 2)
    per_lang = Counter(lang for lang, _ in first)
    smallest = len(task.language_blocks("train", "bb"))
    assert per_lang == {0: smallest, 1: smallest}
    # what the iterator yields in each epoch is exactly that epoch's draw, not a stale order
    assert Counter(first) == expected_samples(task, 1)
    assert Counter(second) == expected_samples(task, 2)
    assert Counter(s for s in first if s[0] == 0) != Counter(s for s in second if s[0] == 0)
    assert task.has_sharded_data("train") and not task.has_sharded_data("valid")


def test_none_uses_all_data(tiny_data):
    task = make_task(tiny_data, balance="none")
    samples = epoch_samples(task, "train", 1)
    sizes = {i: len(task.language_blocks("train", lang)) for i, lang in enumerate(task.languages)}
    assert Counter(lang for lang, _ in samples) == sizes
    assert not task.has_sharded_data("train")


def test_per_language_valid_split(tiny_data):
    task = make_task(tiny_data)
    samples = epoch_samples(task, "valid_bb", 1)
    assert samples and {lang for lang, _ in samples} == {1}
    assert {lang for lang, _ in epoch_samples(task, "valid", 1)} == {0, 1}


def test_masking_is_a_pure_function_of_seed_epoch_index(tiny_data):
    a, b = make_task(tiny_data), make_task(tiny_data)
    a.load_dataset("train", epoch=3)
    b.load_dataset("train", epoch=3)
    for i in range(0, len(a.dataset("train")), 7):
        x, y = a.dataset("train")[i], b.dataset("train")[i]
        assert torch.equal(x["net_input.src_tokens"], y["net_input.src_tokens"])
        assert torch.equal(x["target"], y["target"])


def test_batch_by_language_gives_homogeneous_batches(tiny_data):
    task = make_task(tiny_data, balance="none", batch_by_language=True)
    task.load_dataset("train", epoch=1)
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=5, seed=1, epoch=1).next_epoch_itr(shuffle=True)
    langs_per_batch = [set(batch["lang_id"].tolist()) for batch in itr]
    assert all(len(s) == 1 for s in langs_per_batch)
    assert {next(iter(s)) for s in langs_per_batch} == {0, 1}


def test_missing_split_names_language_and_file(tiny_data, tmp_path):
    data = make_tiny_data(tmp_path / "d", {"aa": 20, "bb": 20})
    (data / "bb" / "valid.bin").unlink()
    task = make_task(data)
    with pytest.raises(BalkdError, match=r"language 'bb' has no valid split: .*bb/valid"):
        task.load_dataset("valid")


def test_empty_language_is_an_error(tmp_path):
    data = make_tiny_data(tmp_path / "d", {"aa": 20, "bb": 0})
    with pytest.raises(BalkdError, match=r"language 'bb' has an empty train split"):
        make_task(data).load_dataset("train")


def test_unknown_language_and_missing_dictionary(tiny_data, tmp_path):
    with pytest.raises(BalkdError, match="'zz'"):
        make_task(tiny_data, languages="aa,zz")
    shutil.copytree(tiny_data, tmp_path / "nodict")
    (tmp_path / "nodict" / "dict.txt").unlink()
    with pytest.raises(BalkdError, match="dict.txt"):
        make_task(tmp_path / "nodict")
