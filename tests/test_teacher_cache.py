"""Offline teacher cache: balkd-cache-teachers, cached = online distillation, refusals."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import distill_args, json_log_records, make_tiny_data, run_fairseq_train

from balkd_fairseq.cli.cache_teachers import main as cache_main
from balkd_fairseq.criterions.multi_teacher_distill import MultiTeacherDistillConfig, MultiTeacherDistillCriterion
from balkd_fairseq.data.mask_origin import SampleAddress
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.soft_labels.cache import TeacherCache
from balkd_fairseq.soft_labels.online import TeacherSet
from balkd_fairseq.soft_labels.teacher_loading import load_teacher
from balkd_fairseq.tasks.balanced_distill import BalancedDistillConfig, BalancedDistillTask

TOPK = 8
EPOCHS = 2
VALID = "valid,valid_aa,valid_bb"


def make_task(data, **overrides):
    """The task as the cache command line below sets it up (tokens per sample 32, seed 1)."""
    cfg = dict(tokens_per_sample=32, seed=1)
    cfg.update(overrides)
    return BalancedDistillTask.setup_task(BalancedDistillConfig(data=str(data), **cfg))


def cache_argv(data, spec, cache_dir, *extra):
    return [str(data), "--task", "balanced_distill", "--teachers", spec, "--tokens-per-sample", "32", "--seed", "1",
            "--max-epoch", str(EPOCHS), "--batch-size", "8", "--cpu", "--valid-subset", VALID,
            "--cache-dir", str(cache_dir), "--cache-topk", str(TOPK), *extra]


@pytest.fixture(scope="module")
def cache_dir(tiny_data, teacher_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "teachers"
    assert cache_main(cache_argv(tiny_data, teacher_spec, out)) == 0
    return out


def first_batch(task, split, epoch, batch_size=8):
    task.load_dataset(split, epoch=epoch)
    itr = task.get_batch_iterator(task.dataset(split), max_sentences=batch_size, seed=1, epoch=epoch,
                                  disable_iterator_cache=True).next_epoch_itr(shuffle=True)
    return next(iter(itr))


def criterion(task, **cfg):
    return MultiTeacherDistillCriterion(MultiTeacherDistillConfig(**cfg), task)


def test_cache_layout_and_manifest(cache_dir, tiny_data, teacher_spec):
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["topk"] == TOPK and manifest["splits"] == {"train": [1, 2], "valid": [1]}
    assert [t["language"] for t in manifest["teachers"]] == ["aa", "bb"]
    assert manifest["fingerprint"]["seed"] == 1 and manifest["fingerprint"]["masking"]["mask_prob"] == 0.15
    task = make_task(tiny_data, teachers=teacher_spec)
    for epoch in (1, 2):
        task.load_dataset("train", epoch=epoch)
        sizes = {lang: len(task.language_blocks("train", lang)) for lang in task.languages}
        for lang in task.languages:
            index = np.load(cache_dir / "train" / f"epoch{epoch}" / f"{lang}.index.npy")
            assert len(index) == min(sizes.values())  # subsample: every language the smallest size
            assert int(index[:, 1].sum()) == manifest["rows"][f"train/epoch{epoch}"][lang]
    assert not os.path.exists(str(cache_dir) + ".partial")


@pytest.mark.parametrize("split,epoch,temperature", [("train", 2, 1.0), ("train", 1, 2.0), ("valid", 1, 1.0), ("valid_bb", 1, 1.0)])
def test_cached_loss_equals_online_topk(cache_dir, tiny_data, teacher_spec, tiny_teachers, split, epoch, temperature):
    task = make_task(tiny_data, teachers=teacher_spec)
    student = load_teacher(task, "bb", str(tiny_teachers["bb"]))  # any fixed model in eval mode
    sample = first_batch(task, split, epoch)
    assert sample["mask_origin"] == {"split": split.split("_")[0], "epoch": epoch}
    online = criterion(task, topk=TOPK, temperature=temperature)
    cached = criterion(make_task(tiny_data, teachers=teacher_spec, teacher_cache=str(cache_dir)), temperature=temperature)
    assert isinstance(online.soft_labels, TeacherSet) and isinstance(cached.soft_labels, TeacherCache)
    loss_online, size_online, log_online = online(student, sample)
    loss_cached, size_cached, log_cached = cached(student, sample)
    assert size_online == size_cached > 0
    assert loss_cached.item() == pytest.approx(loss_online.item(), rel=2e-3)  # fp16 rounding of the stored probabilities
    for lang_id in (0, 1):
        assert float(log_cached["distill_lang_sum"][lang_id]) == pytest.approx(float(log_online["distill_lang_sum"][lang_id]),
                                                                               rel=2e-3, abs=1e-4)
    assert float(log_cached["teacher_entropy"]) == pytest.approx(float(log_online["teacher_entropy"]), rel=2e-3, abs=1e-4)
    assert float(log_cached["top1_agree"]) == float(log_online["top1_agree"])
    # the comparison can fail: the full-vocabulary soft labels give a clearly different loss
    full = criterion(task, temperature=temperature)(student, sample)[0]
    assert abs(full.item() - loss_online.item()) > 0.01 * abs(loss_online.item())


def test_cached_uniform_tail_equals_online_and_comes_closer_to_the_full_teacher(cache_dir, tiny_data, teacher_spec,
                                                                                 tiny_teachers):
    """--topk-tail uniform from the cache (no rebuild) gives the online top-k with the same tail; both are nearer
    the full-vocabulary loss than the renormalised top-k."""
    task = make_task(tiny_data, teachers=teacher_spec)
    student = load_teacher(task, "bb", str(tiny_teachers["bb"]))
    sample = first_batch(task, "train", 1)
    cache_task = make_task(tiny_data, teachers=teacher_spec, teacher_cache=str(cache_dir))
    online = criterion(task, topk=TOPK, topk_tail="uniform")(student, sample)[0].item()
    cached = criterion(cache_task, topk_tail="uniform")(student, sample)[0].item()
    assert cached == pytest.approx(online, rel=2e-3)
    full = criterion(task)(student, sample)[0].item()
    renormalised = criterion(cache_task)(student, sample)[0].item()
    assert abs(cached - full) < abs(renormalised - full)


def test_smaller_topk_reads_a_prefix_of_the_cache(cache_dir, tiny_data, teacher_spec, tiny_teachers):
    task = make_task(tiny_data, teachers=teacher_spec)
    student = load_teacher(task, "aa", str(tiny_teachers["aa"]))
    sample = first_batch(task, "train", 1)
    online = criterion(task, topk=3)(student, sample)[0]
    cache_task = make_task(tiny_data, teachers=teacher_spec, teacher_cache=str(cache_dir))
    cached = criterion(cache_task, topk=3)(student, sample)[0]
    assert cached.item() == pytest.approx(online.item(), rel=2e-3)
    with pytest.raises(BalkdError, match="--topk 9 exceeds the 8 tokens"):
        criterion(cache_task, topk=TOPK + 1)


def test_cache_without_teachers_flag_records_the_caches_teachers(cache_dir, tiny_data):
    task = make_task(tiny_data, teacher_cache=str(cache_dir))  # no --teachers: nothing to compare, nothing loaded
    crit = criterion(task)
    assert isinstance(crit.soft_labels, TeacherCache)
    assert task.teacher_manifest == json.loads((cache_dir / "manifest.json").read_text())["teachers"]


@pytest.mark.parametrize("overrides,match", [
    ({"seed": 2}, r"other seed: seed is 1 in the cache but 2 now"),
    ({"mask_prob": 0.2}, r"other masking settings: masking.mask_prob is 0.15 in the cache but 0.2 now"),
    ({"tokens_per_sample": 24}, r"other masking settings: masking.tokens_per_sample"),
    ({"samples_per_language": 5}, r"other balancing settings: balancing.samples_per_language"),
    ({"balance": "none"}, r"other balancing settings: balancing.balance"),
    ({"balance_draw": "per_epoch"}, r"balancing.balance_draw is 'fixed' in the cache but 'per_epoch' now"),
    ({"languages": "bb"}, r"other languages"),
])
def test_cache_for_other_settings_is_refused(cache_dir, tiny_data, overrides, match):
    with pytest.raises(BalkdError, match=match):
        TeacherCache.open(str(cache_dir), make_task(tiny_data, **overrides))


def test_cache_for_other_data_is_refused(cache_dir, tiny_data, tmp_path):
    other = tmp_path / "data"
    shutil.copytree(tiny_data, other)
    from fairseq.data import Dictionary

    make_tiny_data(other, {"aa": 200, "bb": 40}, seed=9, dictionary=Dictionary.load(str(tiny_data / "dict.txt")))
    with pytest.raises(BalkdError, match=r"other data: data\.files\.aa/train\."):
        TeacherCache.open(str(cache_dir), make_task(other))


def test_cache_for_other_teachers_is_refused(cache_dir, tiny_data, tiny_teachers):
    swapped = f"aa:{tiny_teachers['bb']},bb:{tiny_teachers['aa']}"
    with pytest.raises(BalkdError, match=r"another teacher of language 'aa'"):
        criterion(make_task(tiny_data, teachers=swapped, teacher_cache=str(cache_dir)))


def test_epoch_split_and_masks_beyond_the_cache_are_errors(cache_dir, tiny_data, teacher_spec):
    task = make_task(tiny_data, teachers=teacher_spec)
    cache = TeacherCache.open(str(cache_dir), task)
    sample = first_batch(task, "train", 1)
    masked = sample["target"].ne(task.source_dictionary.pad())
    address = task.sample_address(sample)

    def at(split, epoch):
        return SampleAddress(split, epoch, address.lang_ids, address.sample_ids)

    with pytest.raises(BalkdError, match=r"holds train epochs 1\.\.2; epoch 3 is not cached: rebuild it with --max-epoch 3"):
        cache.lookup(at("train", 3), masked)
    with pytest.raises(BalkdError, match=r"has no 'test' split"):
        cache.lookup(at("test", 1), masked)
    row, col = masked.nonzero()[0].tolist()
    tampered = masked.clone()
    tampered[row, col] = False
    with pytest.raises(BalkdError, match=r"the cache was built with other masks"):
        cache.lookup(at("train", 1), tampered)


def damaged_copy(cache_dir, tmp_path, damage):
    copy = Path(shutil.copytree(cache_dir, tmp_path / "cache"))
    damage(copy / "train" / "epoch2")
    return copy


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _ids_out_of_range(path):
    ids = np.load(path)
    ids[-1, 0] = 10_000
    np.save(path, ids)


def _wrong_shape(path):
    np.save(path, np.load(path)[:, :3])


def _wrong_dtype(path):
    np.save(path, np.load(path).astype(np.float32))


@pytest.mark.parametrize("damage,file,match", [
    (_truncate, "bb.probs.npy", "cannot read"),
    (_ids_out_of_range, "aa.ids.npy", r"token ids outside the vocabulary"),
    (_wrong_shape, "bb.ids.npy", r"has shape \(\d+, 3\), the manifest says \(\d+, 8\)"),
    (_wrong_dtype, "aa.probs.npy", r"holds float32, not float16"),
    (lambda path: path.unlink(), "bb.index.npy", r"incomplete: train epoch 2 has no shard for language\(s\) bb"),
])
def test_damaged_cache_is_refused_at_start_up_naming_the_file(cache_dir, tiny_data, tmp_path, damage, file, match):
    cache = damaged_copy(cache_dir, tmp_path, lambda d: damage(d / file))
    with pytest.raises(BalkdError, match=match) as err:
        make_task(tiny_data, teacher_cache=str(cache)).build_soft_label_source()
    assert "bb" in str(err.value) if "incomplete" in match else str(cache / "train" / "epoch2" / file) in str(err.value)


def test_open_shards_are_bounded(cache_dir, tiny_data):
    task = make_task(tiny_data)
    cache = TeacherCache(str(cache_dir), json.loads((cache_dir / "manifest.json").read_text()), task.sample_address,
                         max_open_shards=2)
    for split, epoch in (("train", 1), ("train", 2), ("valid", 1)):
        for lang_id in (0, 1):
            cache._shard(split, epoch, lang_id)
    assert list(cache._shards) == [("valid", 1, 0), ("valid", 1, 1)]


def test_missing_or_unfinished_cache_is_refused(tiny_data, tmp_path):
    task = make_task(tiny_data)
    with pytest.raises(BalkdError, match="directory not found"):
        TeacherCache.open(str(tmp_path / "nope"), task)
    (tmp_path / "half").mkdir()
    with pytest.raises(BalkdError, match="not a finished teacher cache"):
        TeacherCache.open(str(tmp_path / "half"), task)


def test_cli_refuses_to_overwrite_and_needs_max_epoch(cache_dir, tiny_data, teacher_spec, capsys):
    before = (cache_dir / "manifest.json").stat().st_mtime_ns
    assert cache_main(cache_argv(tiny_data, teacher_spec, cache_dir)) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (cache_dir / "manifest.json").stat().st_mtime_ns == before
    argv = cache_argv(tiny_data, teacher_spec, cache_dir.parent / "other")
    argv[argv.index("--max-epoch") + 1] = "0"
    assert cache_main(argv) == 2
    assert "--max-epoch is required" in capsys.readouterr().err
    assert not (cache_dir.parent / "other").exists()


@pytest.mark.slow
def test_fairseq_train_from_cache_until_the_cache_ends(cache_dir, tiny_data, teacher_spec, tmp_path):
    """Two cached epochs train and validate (per language); epoch 3 stops with the clear error. A --max-epoch
    past the cache is refused before the first update."""
    too_many = distill_args(tiny_data, tmp_path / "early", teacher_spec, updates=1000,
                            extra=["--teacher-cache", str(cache_dir), "--max-epoch", str(EPOCHS + 1)])
    proc = run_fairseq_train(too_many, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"--max-epoch {EPOCHS + 1}: --teacher-cache {cache_dir} holds train epochs 1..{EPOCHS}" in proc.stderr
    assert not json_log_records(proc.stdout, "train_inner") and not (tmp_path / "early" / "checkpoint_last.pt").exists()
    args = distill_args(tiny_data, tmp_path / "ckpt", teacher_spec, updates=1000,
                        extra=["--teacher-cache", str(cache_dir), "--valid-subset", VALID])  # bounded by updates only
    proc = run_fairseq_train(args, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "epoch 3 is not cached" in proc.stderr and "Traceback" not in proc.stderr
    epochs = {r["epoch"] for r in json_log_records(proc.stdout, "train_inner")}
    assert epochs == {1, 2}
    valid_bb = json_log_records(proc.stdout, "valid_bb")
    assert len(valid_bb) == 2 and float(valid_bb[0]["valid_bb_distill_loss"]) > 0
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


@pytest.mark.slow
def test_kill_9_while_writing_leaves_no_usable_cache_and_a_rerun_builds_it(tiny_data, teacher_spec, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "cache"
    argv = cache_argv(tiny_data, teacher_spec, root)
    argv[argv.index("--max-epoch") + 1] = "40"  # long enough to be killed mid-way
    proc = subprocess.Popen([sys.executable, "-m", "balkd_fairseq.cli.cache_teachers", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    partial = tmp_path / "cache.partial"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(partial.glob("train/epoch2/*.npy")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the cache build ended before it could be killed"
    assert not root.exists() and partial.is_dir(), "a half-written cache only ever exists as CACHE.partial"
    with pytest.raises(BalkdError, match=r"incomplete: language\(s\) aa, bb are not cached yet"):
        TeacherCache.open(str(root), make_task(tiny_data))
    # the killed build's settings are recorded: a rerun with others is refused rather than mixed into it
    fewer = list(argv)
    fewer[fewer.index("--max-epoch") + 1] = str(EPOCHS)
    assert cache_main(fewer) == 2
    assert cache_main(argv) == 0 and (root / "manifest.json").is_file() and not partial.exists()
    TeacherCache.open(str(root), make_task(tiny_data))


def test_the_cache_is_built_language_by_language_with_one_teacher_resident(tiny_data, teacher_spec, tmp_path):
    import torch

    from balkd_fairseq.soft_labels.cache_build import build_cache

    task = make_task(tiny_data, teachers=teacher_spec, max_resident_teachers=1)
    teachers = TeacherSet.from_task(task)
    manifest = build_cache(task, teachers, str(tmp_path / "cache"), {"train": [1, 2], "valid": [1]}, k=TOPK,
                           batch_size=8, max_tokens=None, device=torch.device("cpu"), progress=False)
    assert teachers.take_stats()["teacher_loads"] == len(task.languages), "each teacher loaded once, not per epoch"
    assert len(teachers.models) <= 1
    assert manifest["splits"] == {"train": [1, 2], "valid": [1]}


def test_a_full_disk_while_caching_names_the_shard(tmp_path):
    import errno

    from balkd_fairseq.soft_labels.cache_build import ShardWriter

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    writer = ShardWriter(str(tmp_path), "bb", num_samples=2, k=4)
    writer._ids.close()
    writer._ids = FullDisk()
    with pytest.raises(BalkdError, match=rf"could not write the teacher cache shard {tmp_path / 'bb'}\.\*: No space left"):
        writer.add(np.array([0]), np.array([1]), np.zeros((1, 4)), np.zeros((1, 4)))
