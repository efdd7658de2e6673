"""balkd-cache-teachers split over workers (--shard, SLURM array), the merge, and teacher loading/hash memo."""
import json
import os
import re
import shutil

import pytest
import torch

from balkd_fairseq import locks
from balkd_fairseq.checkpoints import load_checkpoint_state
from balkd_fairseq.cli.cache_teachers import main as cache_main
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.files import file_sha256
from balkd_fairseq.hash_memo import memo_path, memoized_sha256
from balkd_fairseq.soft_labels.build_settings import BUILD_SETTINGS, claim_or_check
from balkd_fairseq.soft_labels.cache import LANGUAGES_DIR, TeacherCache
from balkd_fairseq.soft_labels.teacher_loading import TeacherSpec, check_teacher, load_teacher
from balkd_fairseq.tasks.balanced_distill import BalancedDistillConfig, BalancedDistillTask


def make_task(data):
    return BalancedDistillTask.setup_task(BalancedDistillConfig(data=str(data), tokens_per_sample=32, seed=1))


def argv(data, spec, cache_dir, *extra):
    return [str(data), "--task", "balanced_distill", "--teachers", spec, "--tokens-per-sample", "32", "--seed", "1",
            "--max-epoch", "2", "--batch-size", "8", "--cpu", "--valid-subset", "valid",
            "--cache-dir", str(cache_dir), "--cache-topk", "4", *extra]


def tree(root):
    """{relative path: bytes} of every file under ``root``."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def recorded(partial):
    return sorted(name[:-len(".json")] for name in os.listdir(os.path.join(partial, LANGUAGES_DIR)))


@pytest.fixture(scope="module")
def unsharded(tiny_data, teacher_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("unsharded") / "cache"
    assert cache_main(argv(tiny_data, teacher_spec, out)) == 0
    return out


def test_two_shards_merged_by_the_last_equal_the_unsharded_cache(unsharded, tiny_data, teacher_spec, tmp_path,
                                                                 monkeypatch, capsys):
    task = make_task(tiny_data)
    out, partial = tmp_path / "cache", tmp_path / "cache.partial"
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "0/2")) == 0
    assert not out.exists() and "waits for other workers" in capsys.readouterr().out
    first = recorded(partial)
    assert len(first) == 1, "two languages over two workers: one each"
    missing = [lang for lang in task.languages if lang not in first]
    with pytest.raises(BalkdError, match=f"incomplete: language\\(s\\) {missing[0]} are not cached yet"):
        TeacherCache.open(str(out), task)
    with pytest.raises(BalkdError, match=f"incomplete: language\\(s\\) {missing[0]} are not cached yet"):
        TeacherCache.open(str(partial), task)  # pointing at the unfinished directory itself
    assert cache_main(argv(tiny_data, teacher_spec, out, "--merge-only")) == 2
    assert f"language(s) {missing[0]} are not cached yet" in capsys.readouterr().err

    # the second worker is a SLURM array task: it takes its shard from the environment, and merges
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", "1")
    assert cache_main(argv(tiny_data, teacher_spec, out)) == 0
    assert not partial.exists()
    assert tree(out) == tree(unsharded)
    TeacherCache.open(str(out), task)
    assert not list(tmp_path.glob(".*lock")), "no lock file is left behind"

    # a dependent --merge-only job after the array: the last worker merged already, nothing left to do
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert cache_main(argv(tiny_data, teacher_spec, out, "--merge-only")) == 0
    assert tree(out) == tree(unsharded)
    other_k = argv(tiny_data, teacher_spec, out, "--merge-only")
    other_k[other_k.index("--cache-topk") + 1] = "3"
    assert cache_main(other_k) == 2
    assert "a finished cache of other settings (top-4" in capsys.readouterr().err


def test_a_rerun_skips_finished_languages_and_redoes_a_killed_one(tiny_data, teacher_spec, tmp_path):
    out, partial = tmp_path / "cache", tmp_path / "cache.partial"
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
    (lang,) = recorded(partial)
    shard = partial / "train" / "epoch2" / f"{lang}.ids.npy"
    before = shard.stat().st_mtime_ns
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
    assert shard.stat().st_mtime_ns == before, "a finished language is not computed again"

    # a worker killed while writing the language: shards half there, no record; the rerun redoes it
    (partial / LANGUAGES_DIR / f"{lang}.json").unlink()
    shard.write_bytes(b"half")
    (partial / "valid" / "epoch1" / f"{lang}.probs.npy.tmp").write_bytes(b"left over")
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
    assert recorded(partial) == [lang] and shard.stat().st_size > 4
    assert not list(partial.glob("*/*/*.tmp"))

    # a record of other settings (another seed) does not count as finished
    record_path = partial / LANGUAGES_DIR / f"{lang}.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps(dict(record, signature="0" * 64)))
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
    assert json.loads(record_path.read_text())["signature"] == record["signature"]


def test_a_worker_with_other_settings_is_refused_without_touching_the_build(tiny_data, teacher_spec, tmp_path, capsys):
    out, partial = tmp_path / "cache", tmp_path / "cache.partial"
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
    capsys.readouterr()
    before = tree(partial)
    for shard in ("0/2", "1/2"):  # another worker's share, and this very worker's finished language
        args = argv(tiny_data, teacher_spec, out, "--shard", shard, "--mask-prob", "0.2")
        args[args.index("--seed") + 1] = "2"
        assert cache_main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert (f"--mask-prob 0.2, --seed 2, but the cache in {partial} is being built with --mask-prob 0.15, "
                "--seed 1") in err
        assert tree(partial) == before, "nothing of the build is removed or rewritten"
    other_epochs = argv(tiny_data, teacher_spec, out, "--merge-only")
    other_epochs[other_epochs.index("--max-epoch") + 1] = "3"
    assert cache_main(other_epochs) == 2
    assert "train epochs 1..3, but the cache" in capsys.readouterr().err
    # the worker with the build's settings still finishes and merges it
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "0/2")) == 0
    assert not partial.exists() and (out / "manifest.json").is_file() and not (out / BUILD_SETTINGS).exists()


@pytest.mark.parametrize("damage, why", [
    (lambda r: dict(r, fingerprint=None), "its 'fingerprint' is missing or not a mapping"),
    (lambda r: dict(r, splits=[]), "its 'splits' is missing or not a mapping"),
    (lambda r: {k: v for k, v in r.items() if k != "teachers"}, "its 'teachers' is missing or not a mapping"),
    (lambda r: dict(r, fingerprint=dict(r["fingerprint"], masking=1)), "its 'fingerprint/masking' is missing"),
    (lambda r: [r], "not a JSON object"),
    (lambda r: "{", "not valid JSON"),
], ids=["fingerprint-null", "splits-a-list", "no-teachers", "masking-a-number", "a-list", "not-json"])
def test_a_damaged_build_record_is_one_line_naming_it(damage, why, build_record, tmp_path):
    path = tmp_path / BUILD_SETTINGS
    damaged = damage(build_record)
    path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    with pytest.raises(BalkdError, match=f"{re.escape(str(path))}.*{why}") as refused:
        claim_or_check(str(tmp_path), build_record)
    assert "\n" not in str(refused.value) and "delete it once no worker of that build runs" in str(refused.value)


def test_a_language_the_record_lacks_is_a_named_difference(build_record, tmp_path):
    (tmp_path / BUILD_SETTINGS).write_text(json.dumps(build_record))
    grown = dict(build_record, teachers=dict(build_record["teachers"], cc=build_record["teachers"]["aa"]))
    with pytest.raises(BalkdError, match="^a teacher for 'cc' present, but the cache in .* with a teacher for 'cc' absent"):
        claim_or_check(str(tmp_path), grown)


@pytest.fixture(scope="module")
def build_record(tiny_data, teacher_spec, tmp_path_factory):
    """The settings a build's .build.json records (as begun by one worker)."""
    partial = tmp_path_factory.mktemp("record") / "cache.partial"
    assert cache_main(argv(tiny_data, teacher_spec, partial.parent / "cache", "--shard", "1/2")) == 0
    return json.loads((partial / BUILD_SETTINGS).read_text())


def test_a_worker_finding_a_damaged_build_record_stops_in_one_line(tiny_data, teacher_spec, tmp_path, capsys):
    out, partial = tmp_path / "cache", tmp_path / "cache.partial"
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
    settings = json.loads((partial / BUILD_SETTINGS).read_text())
    (partial / BUILD_SETTINGS).write_text(json.dumps(dict(settings, fingerprint=None)))
    before = tree(partial)
    capsys.readouterr()
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "0/2")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"balkd-fairseq: error: --cache-dir: {partial / BUILD_SETTINGS} is not" in err
    assert tree(partial) == before


def test_deleting_the_build_settings_as_advised_keeps_the_languages_that_still_match(tiny_data, tiny_teachers,
                                                                                    teacher_spec, tmp_path, capsys):
    out, partial = tmp_path / "cache", tmp_path / "cache.partial"
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
    (kept,) = recorded(partial)
    other = next(lang for lang in tiny_teachers if lang != kept)
    shard = partial / "train" / "epoch2" / f"{kept}.ids.npy"
    before = shard.stat().st_mtime_ns
    new_teacher = f"{other}:{tiny_teachers[kept]},{kept}:{tiny_teachers[kept]}"  # a new teacher for the other one
    capsys.readouterr()
    assert cache_main(argv(tiny_data, new_teacher, out, "--shard", "0/2")) == 2
    advice = f"to build with these instead, delete {partial / BUILD_SETTINGS} once no worker of that build runs"
    assert advice in capsys.readouterr().err

    (partial / BUILD_SETTINGS).unlink()
    assert cache_main(argv(tiny_data, new_teacher, out, "--shard", "0/2")) == 0
    assert not partial.exists(), "the kept language counts as finished: this worker merged"
    assert (out / "train" / "epoch2" / f"{kept}.ids.npy").stat().st_mtime_ns == before, f"{kept} was not recomputed"
    cached = {record["language"]: record["path"] for record in json.loads((out / "manifest.json").read_text())["teachers"]}
    assert cached[other] == str(tiny_teachers[kept])


@pytest.mark.parametrize("late", [["--shard", "0/2"], ["--merge-only"]], ids=["rerun-worker", "merge-only"])
def test_a_start_during_the_merge_finds_the_merged_cache(late, unsharded, tiny_data, teacher_spec, tmp_path, monkeypatch,
                                                         capsys):
    """A worker or --merge-only that waits for the merge lock while the last worker merges (it found
    CACHE.partial, not CACHE) must not start a new build once the lock is free."""
    out, partial = tmp_path / "cache", tmp_path / "cache.partial"
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "0/2")) == 0
    real_held_lock = locks.held_lock
    merged_by_the_other = []

    def other_worker_merges_first(path, what, wait=False):
        if not merged_by_the_other and path.endswith(".merge" + locks.LOCK_NAME):
            merged_by_the_other.append(True)  # the last worker holds the lock through its merge
            assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
            assert (out / "manifest.json").is_file() and not partial.exists()
        return real_held_lock(path, what, wait=wait)

    monkeypatch.setattr(locks, "held_lock", other_worker_merges_first)
    capsys.readouterr()
    assert cache_main(argv(tiny_data, teacher_spec, out, *late)) == 0, capsys.readouterr().err
    assert merged_by_the_other
    assert not partial.exists(), "no new build is begun beside the merged cache"
    assert tree(out) == tree(unsharded) and capsys.readouterr().out.splitlines()[-1] == str(out)


def test_a_start_with_other_settings_during_the_merge_is_refused(tiny_data, teacher_spec, tmp_path, monkeypatch,
                                                                 capsys):
    """The same wait as above, by a worker with another --cache-topk: the merged cache is not its cache."""
    out = tmp_path / "cache"
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "0/2")) == 0
    real_held_lock, merged_by_the_other = locks.held_lock, []

    def other_worker_merges_first(path, what, wait=False):
        if not merged_by_the_other and path.endswith(".merge" + locks.LOCK_NAME):
            merged_by_the_other.append(True)
            assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "1/2")) == 0
        return real_held_lock(path, what, wait=wait)

    monkeypatch.setattr(locks, "held_lock", other_worker_merges_first)
    capsys.readouterr()
    assert cache_main(argv(tiny_data, teacher_spec, out, "--shard", "0/2", "--cache-topk", "3")) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("balkd-fairseq: error: --cache-dir") and "finished cache of other settings (top-4" in error


def test_a_bad_shard_is_one_line(tiny_data, teacher_spec, tmp_path, capsys):
    assert cache_main(argv(tiny_data, teacher_spec, tmp_path / "c", "--shard", "2/2")) == 2
    assert "--shard 2/2: need 0 <= I < N" in capsys.readouterr().err
    assert not (tmp_path / "c.partial").exists()


# ------------------------------------------------------------------------------ loading teachers
def _file_backed(tensor, path):
    """Whether ``tensor``'s memory lies in a mapping of ``path`` (Linux /proc/self/maps)."""
    address, real = tensor.data_ptr(), os.path.realpath(path)
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and os.path.realpath(fields[5]) == real:
                low, high = (int(x, 16) for x in fields[0].split("-"))
                if low <= address < high:
                    return True
    return False


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc/self/maps")
def test_teachers_are_memory_mapped_and_models_own_their_weights(tiny_data, tiny_teachers, tmp_path):
    path = str(tiny_teachers["aa"])
    state = load_checkpoint_state(path, "teacher")
    assert all(_file_backed(t, path) for t in state["model"].values() if t.numel())
    legacy = tmp_path / "legacy.pt"  # torch's pre-1.6 format cannot be mapped: read as before
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    old = load_checkpoint_state(str(legacy), "teacher")
    assert all(torch.equal(old["model"][k], v) for k, v in state["model"].items())
    shutil.copy(os.path.join(os.path.dirname(path), "dict.txt"), tmp_path / "dict.txt")
    model = load_teacher(make_task(tiny_data), "aa", TeacherSpec(str(legacy)))
    mapped = load_teacher(make_task(tiny_data), "aa", TeacherSpec(path))
    assert not any(_file_backed(p, path) for p in mapped.parameters()), "the model copies the weights out of the map"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), mapped.state_dict().values()))


def test_hash_memo_is_used_only_while_the_file_is_unchanged(tiny_data, tiny_teachers, tmp_path):
    path = tmp_path / "checkpoint.pt"
    shutil.copy(tiny_teachers["aa"], path)
    shutil.copy(os.path.join(os.path.dirname(tiny_teachers["aa"]), "dict.txt"), tmp_path / "dict.txt")
    true = file_sha256(str(path))
    assert memoized_sha256(str(path)) == true and os.path.isfile(memo_path(str(path)))

    memo = json.loads(open(memo_path(str(path))).read())
    forged = dict(memo, sha256="0" * 64)
    open(memo_path(str(path)), "w").write(json.dumps(forged))
    assert memoized_sha256(str(path)) == "0" * 64, "a memo matching size and times is trusted"
    open(memo_path(str(path)), "w").write(json.dumps(dict(forged, mtime_ns=memo["mtime_ns"] - 1)))
    assert memoized_sha256(str(path)) == true, "a memo with a stale mtime is recomputed"
    open(memo_path(str(path)), "w").write("{not json")
    assert memoized_sha256(str(path)) == true

    # a modified checkpoint (same size) gets a new hash, and the teacher check sees it
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF  # inside the zip's trailing records: still the same length
    path.write_bytes(bytes(data))
    assert memoized_sha256(str(path)) == file_sha256(str(path)) != true

    shutil.copy(tiny_teachers["aa"], path)
    record = check_teacher(make_task(tiny_data), "aa", TeacherSpec(str(path)))
    assert record.sha256 == true


def test_hash_memo_in_a_read_only_directory_is_skipped(tiny_teachers, tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    shutil.copy(tiny_teachers["bb"], directory / "checkpoint.pt")
    directory.chmod(0o555)
    try:
        if os.access(directory, os.W_OK):
            pytest.skip("running as root: the directory stays writable")
        assert memoized_sha256(str(directory / "checkpoint.pt")) == file_sha256(str(tiny_teachers["bb"]))
        assert not os.path.exists(memo_path(str(directory / "checkpoint.pt")))
    finally:
        directory.chmod(0o755)
