import json
import subprocess
import sys

import numpy as np
import pytest

from balkd_fairseq.data.balancing import draw_epoch, draw_indices, target_sizes

SIZES = [1000, 200, 50]


def test_subsample_gives_every_language_the_smallest_size():
    assert target_sizes(SIZES, "subsample") == [50, 50, 50]
    assert target_sizes(SIZES, "subsample", samples_per_language=120) == [120, 120, 50]


def test_upsample_gives_every_language_the_largest_size():
    assert target_sizes(SIZES, "upsample") == [1000, 1000, 1000]


def test_none_keeps_all_data():
    assert target_sizes(SIZES, "none") == SIZES


def test_temperature_flattens_the_distribution():
    counts = target_sizes(SIZES, "temperature", alpha=0.3)
    assert abs(sum(counts) - sum(SIZES)) <= len(SIZES)
    shares = np.array(counts) / sum(counts)
    expected = (np.array(SIZES) / sum(SIZES)) ** 0.3
    np.testing.assert_allclose(shares, expected / expected.sum(), atol=2e-3)
    assert counts[2] > SIZES[2] and counts[0] < SIZES[0]
    assert target_sizes(SIZES, "temperature", alpha=1.0) == SIZES


def test_subsample_draws_without_replacement():
    idx = draw_indices(1000, 50, seed=1, epoch=1, lang_index=0)
    assert len(idx) == 50 and len(np.unique(idx)) == 50 and idx.max() < 1000


def test_upsample_repeats_evenly():
    idx = draw_indices(50, 1000, seed=1, epoch=1, lang_index=2)
    counts = np.bincount(idx, minlength=50)
    assert counts.min() == 20 and counts.max() == 20
    idx = draw_indices(50, 120, seed=1, epoch=1, lang_index=2)
    assert set(np.bincount(idx, minlength=50)) == {2, 3}


def test_draw_is_deterministic_and_changes_with_epoch():
    first = draw_epoch(SIZES, "subsample", seed=7, epoch=1)
    again = draw_epoch(SIZES, "subsample", seed=7, epoch=1)
    second = draw_epoch(SIZES, "subsample", seed=7, epoch=2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], second[0])
    assert not np.array_equal(first[0], draw_epoch(SIZES, "subsample", seed=8, epoch=1)[0])


def test_draw_is_identical_in_another_process():
    code = (
        "import json; from balkd_fairseq.data.balancing import draw_epoch; "
        "print(json.dumps([d.tolist() for d in draw_epoch([1000, 200, 50], 'subsample', seed=3, epoch=2)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    here = [d.tolist() for d in draw_epoch(SIZES, "subsample", seed=3, epoch=2)]
    assert json.loads(out.strip().splitlines()[-1]) == here


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError):
        target_sizes(SIZES, "bogus")


def test_language_draws_are_draw_epochs_columns():
    from balkd_fairseq.data.subset_dataset import LanguageDraw

    counts = target_sizes(SIZES, "subsample")
    for per_epoch in (False, True):
        draws = [LanguageDraw(str(i), i, size, count, 7, per_epoch, "subsample")
                 for i, (size, count) in enumerate(zip(SIZES, counts))]
        for epoch in (1, 2, 5):
            expected = draw_epoch(SIZES, "subsample", seed=7, epoch=epoch if per_epoch else 1)
            for draw, indices in zip(draws, expected):
                assert np.array_equal(draw.indices(epoch), indices)


def test_epoch_subset_redraws_in_place_and_says_so_to_fairseq():
    import torch
    from fairseq.data import ListDataset, NestedDictionaryDataset

    from balkd_fairseq.data.subset_dataset import EpochSubsetDataset, LanguageDraw

    items = [torch.full((n,), n) for n in range(1, 41)]
    base = ListDataset(items, sizes=np.array([len(t) for t in items]))
    per_epoch = EpochSubsetDataset(base, LanguageDraw("de", 0, 40, 10, 3, True, "subsample"), epoch=1)
    nested = NestedDictionaryDataset({"x": per_epoch}, sizes=[per_epoch.sizes])
    first = [int(per_epoch[i][0]) for i in range(10)]
    nested.set_epoch(2)
    second = [int(per_epoch[i][0]) for i in range(10)]
    assert first != second and len(per_epoch) == 10
    assert np.array_equal(nested.sizes[0], second)  # the sizes fairseq batches by follow the draw
    assert not per_epoch.can_reuse_epoch_itr_across_epochs
    fixed = EpochSubsetDataset(base, LanguageDraw("de", 0, 40, 10, 3, False, "subsample"), epoch=1)
    before = [int(fixed[i][0]) for i in range(10)]
    fixed.set_epoch(2)
    assert [int(fixed[i][0]) for i in range(10)] == before and fixed.can_reuse_epoch_itr_across_epochs
