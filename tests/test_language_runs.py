"""Runs of R consecutive one-language batches: deterministic, complete, and intact under sharding."""
import numpy as np
import torch
from fairseq.data import iterators

from balkd_fairseq.data.language_runs import LanguageRunBatchIterator, language_runs, shuffled_runs


def grouped_batches(sizes_per_lang, batch_size=2):
    """Batches in language order (what --batch-by-language builds), and each sample's language."""
    langs, batches, start = [], [], 0
    for lang, n in enumerate(sizes_per_lang):
        langs += [lang] * n
        batches += [list(range(i, min(i + batch_size, start + n))) for i in range(start, start + n, batch_size)]
        start += n
    return batches, np.asarray(langs)


def runs_of(order, langs):
    """Lengths of maximal stretches of one language in a batch order."""
    out, prev = [], None
    for batch in order:
        lang = langs[batch[0]]
        if lang == prev:
            out[-1] += 1
        else:
            out.append(1)
        prev = lang
    return out


def test_runs_cut_each_language_into_chunks_of_r():
    batches, langs = grouped_batches([10, 4, 7])  # 5, 2 and 4 batches
    runs = language_runs(batches, langs, run_length=3)
    assert [len(r) for r in runs] == [3, 2, 2, 3, 1]
    assert all(len({langs[b[0]] for b in run}) == 1 for run in runs)


def test_shuffled_runs_are_a_permutation_of_whole_runs_and_depend_on_seed():
    batches, langs = grouped_batches([40, 40, 40, 40])
    a = shuffled_runs(batches, langs, 4, seed=5)
    assert sorted(map(tuple, a)) == sorted(map(tuple, batches))
    assert a == shuffled_runs(batches, langs, 4, seed=5)
    assert a != shuffled_runs(batches, langs, 4, seed=6)
    assert all(length % 4 == 0 for length in runs_of(a, langs))  # whole runs (adjacent runs may share a language)
    assert max(runs_of(batches, langs)) == 20 and a != batches


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        return i

    def __len__(self):
        return self.n


def make_iterator(batches, num_shards=1, shard_id=0):
    return iterators.EpochBatchIterator(dataset=ToyDataset(sum(map(len, batches))), collate_fn=lambda s: s,
                                        batch_sampler=batches, seed=1, num_shards=num_shards, shard_id=shard_id)


def test_iterator_keeps_runs_per_worker_and_resumes_at_the_same_batch():
    batches, langs = grouped_batches([24, 24, 24, 24])  # 12 batches per language
    for shards in (1, 2):
        orders = []
        for shard in range(shards):
            itr = LanguageRunBatchIterator.from_iterator(make_iterator(batches, shards, shard), langs, run_length=3)
            orders.append(list(itr.next_epoch_itr(shuffle=True)))
        # every worker sees runs of 3 steps of one language, and the workers agree on the language of a step
        for order in orders:
            assert all(length % 3 == 0 for length in runs_of(order, langs)), runs_of(order, langs)
        for step in zip(*orders):
            assert len({langs[b[0]] for b in step}) == 1
    itr = LanguageRunBatchIterator.from_iterator(make_iterator(batches), langs, run_length=3)
    epoch = itr.next_epoch_itr(shuffle=True)
    seen = [next(epoch) for _ in range(5)]
    state = itr.state_dict()
    rest = list(epoch)
    resumed = LanguageRunBatchIterator.from_iterator(make_iterator(batches), langs, run_length=3)
    resumed.load_state_dict(state)
    assert list(resumed.next_epoch_itr(shuffle=True)) == rest and len(seen + rest) == len(batches)


def test_short_runs_come_last_so_steps_of_several_batches_keep_one_language():
    batches, langs = grouped_batches([22, 14, 30, 18])  # 11, 7, 15 and 9 batches: a short run each
    batches_per_step, run_length = 2, 6  # R = 3 steps of --update-freq 2
    order = shuffled_runs(batches, langs, run_length, seed=3)
    assert sorted(map(tuple, order)) == sorted(map(tuple, batches))
    full_runs = sum(n // run_length for n in (11, 7, 15, 9))
    steps = [order[i:i + batches_per_step] for i in range(0, full_runs * run_length, batches_per_step)]
    assert all(len({langs[b[0]] for b in step}) == 1 for step in steps)
