"""balkd-train-teachers: one teacher per language, resumable, skips complete ones, writes teachers.json."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TINY_ARCH

from balkd_fairseq.cli.train_teachers import main
from balkd_fairseq.data.dictionary_hash import dict_file_sha256
from balkd_fairseq.teacher_training.runs import (
    language_subset_args,
    restore_previous_run,
    set_aside_previous_run,
    train_one,
)

pytestmark = pytest.mark.slow

FLAGS = ["--", *TINY_ARCH, "--tokens-per-sample", "32", "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001",
         "--max-update", "2", "--cpu", "--required-batch-size-multiple", "1", "--disable-validation", "--num-workers", "0"]


def snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_trains_each_language_then_skips_complete_ones(tiny_data, tmp_path, capsys):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    for lang in ("aa", "bb"):
        (data / lang / "dict.txt").unlink()  # only DATA/dict.txt: nothing is scattered for the teachers
    before = snapshot(data)
    save = tmp_path / "teachers"
    assert main([str(data), "--save-dir", str(save), *FLAGS]) == 0
    assert snapshot(data) == before, "balkd-train-teachers wrote into the input DATA directory"
    mapping = json.loads((save / "teachers.json").read_text())
    assert set(mapping) == {"aa", "bb"}
    for lang, path in mapping.items():
        assert path == str(save / lang / "checkpoint_last.pt")
        assert (save / lang / "dict.txt").read_bytes() == (data / "dict.txt").read_bytes()
        done = json.loads((save / lang / "teacher_done.json").read_text())
        assert done["dictionary_sha256"] == dict_file_sha256(str(data / "dict.txt"))
    stamp = (save / "aa" / "checkpoint_last.pt").stat().st_mtime_ns

    capsys.readouterr()
    assert main([str(data), "--save-dir", str(save), *FLAGS]) == 0
    assert "teacher for aa is complete; skipped" in capsys.readouterr().out
    assert (save / "aa" / "checkpoint_last.pt").stat().st_mtime_ns == stamp

    # different flags: the teacher is not complete for them, fairseq resumes from checkpoint_last.pt
    at = FLAGS.index("--max-update") + 1
    more = FLAGS[:at] + ["3"] + FLAGS[at + 1:]
    assert main([str(data), "--save-dir", str(save), "--languages", "aa", *more]) == 0
    assert "Loaded checkpoint" in (save / "aa" / "train.log").read_text()
    assert json.loads((save / "teachers.json").read_text()) == mapping, "--languages aa dropped bb's teacher"

    # balkd-train itself (any task) does not train a finished run past its --max-update
    last = save / "aa" / "checkpoint_last.pt"
    before = last.read_bytes()
    train_one(str(data), "aa", str(save / "aa"), more[1:])
    assert last.read_bytes() == before, "a finished teacher was trained one more update"
    assert "the run is finished, nothing to do" in (save / "aa" / "train.log").read_text()

    # other flags that train it no further (its schedule is done): refused, the record keeps the flags it had
    done = (save / "aa" / "teacher_done.json").read_text()
    at = more.index("--lr") + 1
    other_lr = more[:at] + ["0.01"] + more[at + 1:]
    capsys.readouterr()
    assert main([str(data), "--save-dir", str(save), "--languages", "aa", *other_lr]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert "finished with other settings (flags from '--lr 0.001' there, '--lr 0.01' now)" in err.splitlines()[-1]
    assert (save / "aa" / "teacher_done.json").read_text() == done and last.read_bytes() == before

    # DATA prepared again with another dictionary: a finished teacher is not skipped as complete
    original = (data / "dict.txt").read_text(encoding="utf-8")
    (data / "dict.txt").write_text(original + "zzextra 1\n", encoding="utf-8")
    assert main([str(data), "--save-dir", str(save), "--languages", "aa", *more]) == 2
    assert "'aa'" in (err := capsys.readouterr().err) and "trained with another dictionary" in err
    assert main([str(data), "--save-dir", str(save), "--languages", "aa", "--force", *more]) == 0  # the remedy
    assert (save / "aa" / "dict.txt").read_text(encoding="utf-8") == original + "zzextra 1\n"
    (data / "dict.txt").write_text(original, encoding="utf-8")

    # --force retrains from scratch (not a resume past --max-update), and leaves no old files behind
    assert main([str(data), "--save-dir", str(save), "--languages", "aa", "--force", *FLAGS]) == 0
    assert torch.load(last, weights_only=True)["optimizer_history"][-1]["num_updates"] == 2
    assert "Loaded checkpoint" not in (save / "aa" / "train.log").read_text()
    assert not (save / "aa" / ".previous").exists()


def test_force_sets_the_old_teacher_aside_until_the_new_one_is_done(tmp_path):
    lang_dir = tmp_path / "aa"
    lang_dir.mkdir()
    (lang_dir / "checkpoint_last.pt").write_bytes(b"old")
    (lang_dir / "teacher_done.json").write_text("{}")
    (lang_dir / ".balkd.lock").write_text("lock")
    previous = set_aside_previous_run(str(lang_dir))
    assert sorted(p.name for p in lang_dir.iterdir()) == [".balkd.lock", ".previous"]
    (lang_dir / "checkpoint_last.pt").write_bytes(b"partial new")  # a retraining that then fails
    restore_previous_run(str(lang_dir), previous)
    assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"old" and (lang_dir / "teacher_done.json").exists()
    assert not (lang_dir / ".previous").exists()

    set_aside_previous_run(str(lang_dir))
    (lang_dir / "checkpoint_last.pt").write_bytes(b"partial new")  # interrupted: --force again
    set_aside_previous_run(str(lang_dir))
    assert not (lang_dir / "checkpoint_last.pt").exists(), "the interrupted retraining's files are dropped"
    assert (lang_dir / ".previous" / "checkpoint_last.pt").read_bytes() == b"old", "the complete teacher is kept"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert set_aside_previous_run(str(empty)) is None, "nothing to set aside"


def test_an_interrupted_force_retraining_puts_the_finished_teacher_back(tiny_data, tmp_path, monkeypatch):
    from balkd_fairseq.teacher_training import runs as train_teachers

    lang_dir = tmp_path / "aa"
    lang_dir.mkdir()
    (lang_dir / "checkpoint_last.pt").write_bytes(b"finished")
    (lang_dir / "teacher_done.json").write_text("{}")

    def interrupted(data, lang, directory, *args):
        (lang_dir / "checkpoint_last.pt").write_bytes(b"11 updates of 100000")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_teachers, "_train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_one(str(tiny_data), "aa", str(lang_dir), FLAGS[1:], fresh=True)
    assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"finished" and not (lang_dir / ".previous").exists()


def test_errors_name_the_problem(tiny_data, tmp_path, capsys):
    assert main([str(tiny_data), "--save-dir", str(tmp_path), "--languages", "aa,zz", *FLAGS]) == 2
    assert "language 'zz' from --languages has no directory" in capsys.readouterr().err
    assert main([str(tiny_data), "--save-dir", str(tmp_path), "--", "--task", "masked_lm"]) == 2
    assert "balkd-train-teachers sets them" in capsys.readouterr().err


def test_subsets_are_paths_inside_the_language_directory():
    assert language_subset_args(["--lr", "1"], "de") == ["--train-subset", "de/train", "--valid-subset", "de/valid", "--lr", "1"]
    assert language_subset_args(["--valid-subset=valid,test", "--train-subset", "big"], "de") == [
        "--train-subset", "de/big", "--valid-subset", "de/valid,de/test"]


def test_shards_train_disjoint_languages_and_the_last_writes_teachers_json(tiny_data, tmp_path, capsys):
    save = tmp_path / "teachers"
    trained = []
    for shard in ("0/2", "1/2"):
        before = {lang for lang in ("aa", "bb") if (save / lang / "teacher_done.json").exists()}
        assert main([str(tiny_data), "--save-dir", str(save), "--shard", shard, *FLAGS]) == 0
        after = {lang for lang in ("aa", "bb") if (save / lang / "teacher_done.json").exists()}
        trained.append(after - before)
        if shard == "0/2":
            assert "teachers.json waits for 1 language(s)" in capsys.readouterr().out
            assert not (save / "teachers.json").exists()
    assert [len(t) for t in trained] == [1, 1] and trained[0] != trained[1], "each worker trains its own language"
    assert set(json.loads((save / "teachers.json").read_text())) == {"aa", "bb"}
    # the larger language (aa: 200 sentences) goes to the first worker
    assert trained[0] == {"aa"}
    # an impossible shard is one line, exit 2
    assert main([str(tiny_data), "--save-dir", str(save), "--shard", "2/2", *FLAGS]) == 2
    assert "--shard 2/2: need 0 <= I < N" in capsys.readouterr().err


def test_teachers_bounded_by_max_update_are_shared_out_by_count_not_by_size():
    """Every teacher of a --max-update run trains as long whatever its data: by size, one worker got de alone."""
    from balkd_fairseq.sharding import Shard, languages_of_shard
    from balkd_fairseq.teacher_training.runs import shard_weights

    sizes = {"de": 5000, "es": 4000, "eu": 80, "tr": 70}
    by_count = shard_weights(sizes, ["--arch", "roberta_base", "--max-update", "500"])
    assert by_count == dict.fromkeys(sizes, 1) and shard_weights(sizes, ["--max-update=500"]) == by_count
    assert shard_weights(sizes, ["--max-epoch", "3", "--max-update", "500"]) == sizes  # epochs: work grows with size
    assert shard_weights(sizes, []) == sizes
    assert [languages_of_shard(list(sizes), by_count, Shard(i, 2)) for i in (0, 1)] == [["de", "eu"], ["es", "tr"]]
    assert [languages_of_shard(list(sizes), sizes, Shard(i, 2)) for i in (0, 1)] == [["de"], ["es", "eu", "tr"]]


def test_the_dictionary_is_recorded_beside_the_checkpoints_and_another_is_refused(tiny_data, tmp_path):
    from balkd_fairseq.data.dictionary_hash import record_dictionary
    from balkd_fairseq.errors import BalkdError

    source, save = tiny_data / "dict.txt", tmp_path / "save"
    assert record_dictionary(str(source), str(save)) == dict_file_sha256(str(source))
    assert (save / "dict.txt").read_bytes() == source.read_bytes()
    assert record_dictionary(str(source), str(save)) == dict_file_sha256(str(source))  # again: nothing to do
    other = tmp_path / "other.txt"
    other.write_text("zz 1\n")
    # another dictionary beside a checkpoint is never replaced
    (save / "checkpoint_best.pt").write_bytes(b"a model trained with dict.txt")
    with pytest.raises(BalkdError, match=r"--save-dir .*save holds another dictionary \(.*save/dict.txt differs from "
                                         r".*other.txt\)"):
        record_dictionary(str(other), str(save))
    assert (save / "dict.txt").read_bytes() == source.read_bytes()
    # with none beside it, a run that failed before its first save left it: it belongs to no model
    (save / "checkpoint_best.pt").unlink()
    assert record_dictionary(str(other), str(save)) == dict_file_sha256(str(other))
    assert (save / "dict.txt").read_bytes() == other.read_bytes()
    # ... but another prepared DATA given as --save-dir by mistake keeps its dictionary
    (save / "spm.model").write_bytes(b"sentencepiece")
    with pytest.raises(BalkdError, match="holds another dictionary"):
        record_dictionary(str(source), str(save))
    assert (save / "dict.txt").read_bytes() == other.read_bytes()


def test_teachers_json_keeps_other_languages_whose_checkpoints_exist(tmp_path, capsys):
    from balkd_fairseq.teacher_training.teachers_json import previous_entries

    out = tmp_path / "teachers.json"
    assert previous_entries(str(out), {"aa": "new"}, "sha") == {}
    kept_checkpoint = tmp_path / "bb.pt"
    kept_checkpoint.write_bytes(b"x")
    other = tmp_path / "ee" / "checkpoint_last.pt"  # a teacher of another dictionary
    other.parent.mkdir()
    other.write_bytes(b"y")
    (other.parent / "teacher_done.json").write_text(json.dumps({"dictionary_sha256": "other"}))
    out.write_text(json.dumps({"aa": "old", "bb": str(kept_checkpoint), "cc": str(tmp_path / "gone.pt"),
                               "dd": {"checkpoint": str(kept_checkpoint), "init_from": {"sha256": "0"}},
                               "ee": str(other)}))
    kept = previous_entries(str(out), {"aa": "new"}, "sha")
    assert kept == {"bb": str(kept_checkpoint), "dd": {"checkpoint": str(kept_checkpoint), "init_from": {"sha256": "0"}}}
    printed = capsys.readouterr().out
    assert "dropped 'cc'" in printed and "dropped 'ee'" in printed and "another dictionary" in printed
    out.write_text("[]")
    with pytest.raises(Exception, match="is not a teachers.json"):
        previous_entries(str(out), {"aa": "new"}, "sha")


def test_a_teacher_resumed_under_other_flags_records_every_run(tmp_path):
    from balkd_fairseq.teacher_training.records import mark_complete, record_run, recorded_runs

    lang_dir = tmp_path / "aa"
    lang_dir.mkdir()
    first, second = ["--lr", "0.001"], ["--lr", "0.002"]
    record_run(str(lang_dir), first, None)  # interrupted before it finished
    record_run(str(lang_dir), first, None)  # resumed the same way: nothing new
    assert len(recorded_runs(str(lang_dir))) == 1
    record_run(str(lang_dir), second, None)  # resumed with another --lr, and finished
    changed = mark_complete(str(lang_dir), "sig", second, "digest", None, {})
    assert changed and "--lr 0.001" in changed and "--lr 0.002" in changed
    done = json.loads((lang_dir / "teacher_done.json").read_text())
    assert done["fairseq_args"] == second
    assert [run["fairseq_args"] for run in done["trained_under"]] == [first, second]

    plain = tmp_path / "bb"
    plain.mkdir()
    record_run(str(plain), first, None)
    assert mark_complete(str(plain), "sig", first, "digest", None, {}) is None
    assert "trained_under" not in json.loads((plain / "teacher_done.json").read_text())


def test_a_failed_teacher_says_why_from_its_log(tmp_path):
    from balkd_fairseq.teacher_training.runs import failure_reason

    log = tmp_path / "train.log"
    log.write_text("2026 | INFO | x\nTraceback (most recent call last):\n  File \"a.py\", line 1\n"
                   "Exception: The dataset is empty. This could indicate that all elements in the dataset have been "
                   "skipped. Try increasing the max number of allowed tokens or using a larger dataset.\n")
    assert "--required-batch-size-multiple 1 after '--'" in failure_reason(str(log))
    log.write_text("Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: something odd\n")
    assert failure_reason(str(log)) == ": ValueError: something odd"
    assert failure_reason(str(tmp_path / "missing.log")) == ""
    # the log is appended to across runs: only this run's part counts
    earlier = "Exception: The dataset is empty. This could indicate ...\n"
    log.write_text(earlier + "fairseq-train: error: unrecognized arguments: --bogus-flag 3\n")
    assert failure_reason(str(log), len(earlier)) == ": fairseq-train: error: unrecognized arguments: --bogus-flag 3"


def test_a_run_that_failed_before_saving_is_not_recorded_as_trained_under(tiny_data, tmp_path, monkeypatch):
    from balkd_fairseq.teacher_training import runs
    from balkd_fairseq.teacher_training.records import recorded_runs

    lang_dir = tmp_path / "aa"
    monkeypatch.setattr(runs, "run_child", lambda *args, **kwargs: 1)  # fails at start-up, saves nothing
    with pytest.raises(Exception, match="teacher for language 'aa' failed"):
        train_one(str(tiny_data), "aa", str(lang_dir), ["--required-batch-size-multiple", "8"])
    assert recorded_runs(str(lang_dir)) == []

    def saves_then_fails(*args, **kwargs):
        (lang_dir / "checkpoint_last.pt").write_bytes(b"10 updates")
        return 1

    monkeypatch.setattr(runs, "run_child", saves_then_fails)
    with pytest.raises(Exception, match="teacher for language 'aa' failed"):
        train_one(str(tiny_data), "aa", str(lang_dir), ["--lr", "1"])
    assert [run["fairseq_args"] for run in recorded_runs(str(lang_dir))] == [["--lr", "1"]], "it trained: kept"


def fake_training(monkeypatch, content=b"trained", interrupt=False, checkpoints=("last",)):
    """Replace fairseq-train by writing checkpoints: what train_one and the command do around it is under test.
    A checkpoint_last.pt already there is left alone (fairseq resuming a teacher whose schedule is done)."""
    from balkd_fairseq.teacher_training import runs

    def train(data, lang, lang_dir, *args, **kwargs):
        if interrupt:
            (Path(lang_dir) / "checkpoint_last.pt").write_bytes(b"partial")
            raise KeyboardInterrupt
        for which in checkpoints:
            path = Path(lang_dir) / f"checkpoint_{which}.pt"
            if not (which == "last" and path.is_file()):
                path.write_bytes(content)
        return dict_file_sha256(f"{data}/dict.txt")

    monkeypatch.setattr(runs, "_train", train)


def test_previous_is_never_newer_than_a_complete_teacher_beside_it(tiny_data, tmp_path, monkeypatch, capsys):
    """kill -9 of a --force run leaves the old teacher in .previous; no later run may lose it or bring it back
    over a newer complete teacher."""
    save, args = tmp_path / "teachers", [str(tiny_data), "--save-dir", str(tmp_path / "teachers"), "--languages", "aa"]
    lang_dir = save / "aa"
    fake_training(monkeypatch, b"old")
    assert main([*args, *FLAGS]) == 0
    # --force killed with kill -9 mid-training: nothing was put back
    set_aside_previous_run(str(lang_dir))
    (lang_dir / "checkpoint_last.pt").write_bytes(b"partial")
    # (b) a rerun without --force completes the teacher: the old one in .previous goes only now
    fake_training(monkeypatch, b"new")
    (lang_dir / "checkpoint_last.pt").unlink()  # (this fake trains only where nothing was saved)
    assert main([*args, *FLAGS]) == 0
    assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"new"
    assert not (lang_dir / ".previous").exists(), "a stale .previous stayed beside the complete teacher"

    # (c) such a stale .previous (left by an older version) and a --force run stopped with Ctrl-C
    (lang_dir / ".previous").mkdir()
    (lang_dir / ".previous" / "checkpoint_last.pt").write_bytes(b"old")
    (lang_dir / ".previous" / "teacher_done.json").write_text("{}")
    fake_training(monkeypatch, interrupt=True)
    capsys.readouterr()
    assert main([*args, "--force", *FLAGS]) == 130
    assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"new", "the newer complete teacher was replaced"
    assert not (lang_dir / ".previous").exists()
    assert "discarding an older teacher" in capsys.readouterr().out

    # kill -9 of --force, then --force again: the old teacher stays set aside until the new one completes
    set_aside_previous_run(str(lang_dir))
    (lang_dir / "checkpoint_last.pt").write_bytes(b"partial")
    assert main([*args, "--force", *FLAGS]) == 130
    assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"new" and not (lang_dir / ".previous").exists()
    fake_training(monkeypatch, b"newest")
    assert main([*args, "--force", *FLAGS]) == 0
    assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"newest" and not (lang_dir / ".previous").exists()


def test_a_stopped_force_run_does_not_say_a_rerun_resumes(tmp_path, monkeypatch):
    from balkd_fairseq.processes import Interrupted
    from balkd_fairseq.teacher_training import runs

    lang_dir = tmp_path / "aa"
    lang_dir.mkdir()
    (lang_dir / "checkpoint_last.pt").write_bytes(b"finished")
    (lang_dir / "teacher_done.json").write_text("{}")
    hints = []

    def stopped(*args, stopped_hint, **kwargs):
        hints.append(stopped_hint)
        raise Interrupted(2)

    monkeypatch.setattr(runs, "record_dictionary", lambda *args: "sha")
    monkeypatch.setattr(runs, "run_child", stopped)
    with pytest.raises(Interrupted):
        train_one("data", "aa", str(lang_dir), ["--lr", "1"], fresh=True)
    assert "put back" in hints[0] and "from scratch" in hints[0] and "resume" not in hints[0]
    assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"finished"
    with pytest.raises(Interrupted):
        train_one("data", "aa", str(lang_dir), ["--lr", "1"])
    assert hints[1] == "run the same command again to resume"


def test_a_teacher_of_other_training_data_is_not_complete(tiny_data, tmp_path, monkeypatch, capsys):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    args = [str(data), "--save-dir", str(tmp_path / "teachers"), "--languages", "aa", *FLAGS]
    done = tmp_path / "teachers" / "aa" / "teacher_done.json"
    fake_training(monkeypatch)
    assert main(args) == 0
    assert json.loads(done.read_text())["train_data"]["split"] == "aa/train"
    # other text under the same dictionary (another DATA, or fairseq-preprocess --srcdict): not skipped; the
    # finished teacher's schedule is done, so it is refused as for other flags
    for ext in ("bin", "idx"):
        shutil.copy(data / "bb" / f"train.{ext}", data / "aa" / f"train.{ext}")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "had finished with other settings (its training data aa/train changed since)" in err
    assert "--force" in err and err.count("error:") == 1
    assert main(["--force", *args]) == 0
    capsys.readouterr()
    assert main(args) == 0 and "teacher for aa is complete; skipped" in capsys.readouterr().out
    # a record written before training data was recorded still counts as complete
    record = json.loads(done.read_text())
    del record["train_data"]
    done.write_text(json.dumps(record))
    assert main(args) == 0 and "teacher for aa is complete; skipped" in capsys.readouterr().out


def test_a_missing_checkpoint_and_a_teacher_that_saves_none_are_named(tiny_data, tmp_path, monkeypatch, capsys):
    save = tmp_path / "teachers"
    validating = [flag for flag in FLAGS if flag != "--disable-validation"]
    args = [str(tiny_data), "--save-dir", str(save), "--languages", "aa", "--use-checkpoint", "best"]
    fake_training(monkeypatch, checkpoints=("last", "best"))
    assert main([*args, *validating]) == 0
    (save / "aa" / "checkpoint_best.pt").unlink()  # deleted by hand
    capsys.readouterr()
    assert main([*args, *validating]) == 2
    out, err = capsys.readouterr()
    assert "complete; skipped" not in out
    assert err.strip().endswith("is recorded complete but its checkpoint_best.pt is missing: retrain it with "
                                "--languages aa --force")
    for flag in ("--no-save", "--no-last-checkpoints"):
        assert main([*args, *validating, flag]) == 2
        assert f"'{flag}' after '--': a teacher must save its checkpoints" in capsys.readouterr().err


def test_a_teacher_of_another_init_offers_force(tmp_path):
    from balkd_fairseq.errors import BalkdError
    from balkd_fairseq.teacher_init import record_init

    (tmp_path / "checkpoint_last.pt").write_bytes(b"from random weights")
    (tmp_path / "teacher_init.json").write_text("{}")
    with pytest.raises(BalkdError, match=r"pass --force to retrain it from scratch from this one, or use another "
                                         r"--save-dir"):
        record_init(str(tmp_path), "aa", {"path": "student.pt", "sha256": "ab" * 32})


def test_a_teacher_split_by_a_kill_while_its_files_moved_is_made_whole(tmp_path, monkeypatch):
    """kill -9 while --force moves the teacher into .previous (or back): the next run finishes the move."""
    for moving in (".previous.moving", ".previous.restoring"):
        lang_dir = tmp_path / moving
        (lang_dir / moving).mkdir(parents=True)
        (lang_dir / moving / "checkpoint_last.pt").write_bytes(b"finished")  # moved before the kill
        (lang_dir / "teacher_done.json").write_text("{}")  # not yet moved
        fake_training(monkeypatch, interrupt=True)
        with pytest.raises(KeyboardInterrupt):
            train_one("data", "aa", str(lang_dir), FLAGS[1:], fresh=True)
        assert sorted(p.name for p in lang_dir.iterdir()) == [".balkd.lock", "checkpoint_last.pt", "teacher_done.json"]
        assert (lang_dir / "checkpoint_last.pt").read_bytes() == b"finished"


def test_a_start_with_unchanged_data_hashes_no_data_file(tiny_data, tmp_path, monkeypatch, capsys):
    """Every start (each worker of a sharded run) hashed every language's .idx and loaded dict.txt once per
    language: 3-6 s per start at 100 languages. Unchanged files are now known by their recorded stamps."""
    from balkd_fairseq.teacher_training import records

    data = shutil.copytree(tiny_data, tmp_path / "data")
    args = [str(data), "--save-dir", str(tmp_path / "teachers"), *FLAGS]
    fake_training(monkeypatch)
    assert main(args) == 0
    hashed, loaded = [], []
    monkeypatch.setattr(records, "split_fingerprint", lambda prefix: hashed.append(prefix) or "hashed")
    monkeypatch.setattr(records, "dict_file_sha256", lambda path: loaded.append(path) or dict_file_sha256(path))
    monkeypatch.setattr(records, "_DICTIONARY_DIGESTS", {}, raising=False)  # as in a new process
    capsys.readouterr()
    assert main(args) == 0 and capsys.readouterr().out.count("complete; skipped") == 2
    assert hashed == [] and len(loaded) == 1
    for ext in ("bin", "idx"):  # other text in place (new stamps): hashed, and the teacher is not complete
        shutil.copy(data / "bb" / f"train.{ext}", data / "aa" / f"train.{ext}")
    assert main(args) == 2 and hashed == [str(data / "aa" / "train")]
    assert "its training data aa/train changed since" in capsys.readouterr().err


def test_a_record_written_before_stamps_gets_them_once_its_data_is_found_unchanged(tiny_data, tmp_path, monkeypatch,
                                                                                    capsys):
    """A teacher_done.json from before the stamps (or of files touched since) was hashed again at every start,
    forever. Once its fingerprint is found to match, the stamps are added to it; nothing else changes."""
    import subprocess
    import sys

    from balkd_fairseq import locks
    from balkd_fairseq.teacher_training import records

    data = shutil.copytree(tiny_data, tmp_path / "data")
    save = tmp_path / "teachers"
    args = [str(data), "--save-dir", str(save), *FLAGS]
    fake_training(monkeypatch)
    assert main(args) == 0
    locks.release_all()  # as when that run ended: its teachers' directories are free
    done = {lang: save / lang / "teacher_done.json" for lang in ("aa", "bb")}
    stamped = json.loads(done["aa"].read_text())
    unstamped = dict(stamped, train_data={k: v for k, v in stamped["train_data"].items() if k != "stamps"})
    done["aa"].write_text(json.dumps(unstamped))
    no_data = {k: v for k, v in json.loads(done["bb"].read_text()).items() if k != "train_data"}
    done["bb"].write_text(json.dumps(no_data))  # from before train_data: it cannot be stamped (nothing to vouch for)
    hashed = []
    real_fingerprint = records.split_fingerprint
    monkeypatch.setattr(records, "split_fingerprint", lambda prefix: hashed.append(prefix) or real_fingerprint(prefix))

    # another process holds aa's directory (it may be rewriting the record): left alone, hashed again next time
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | "
                               "os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print(1, flush=True); sys.stdin.read()",
                               str(save / "aa" / ".balkd.lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"1"  # (a hang here: this process still holds the lock)
        assert main(args) == 0 and hashed == [str(data / "aa" / "train")]
    finally:
        holder.stdin.close()
        holder.wait()
    assert json.loads(done["aa"].read_text()) == unstamped

    # a worker of another shard compares aa's record but leaves it alone (it may be starting to train aa)
    others = []
    for shard in ("0/2", "1/2"):
        done["aa"].write_text(json.dumps(unstamped))
        capsys.readouterr()
        assert main([str(data), "--save-dir", str(save), "--shard", shard, *FLAGS]) == 0
        if "teacher for aa" not in capsys.readouterr().out:  # not this worker's language
            others.append(json.loads(done["aa"].read_text()))
    assert others == [unstamped]

    done["aa"].write_text(json.dumps(unstamped))
    hashed.clear()
    capsys.readouterr()
    assert main(args) == 0 and capsys.readouterr().out.count("complete; skipped") == 2
    assert hashed == [str(data / "aa" / "train")], "hashed once more, to find the data unchanged"
    assert json.loads(done["aa"].read_text()) == stamped, "the stamps were added, every other field kept"
    assert json.loads(done["bb"].read_text()) == no_data
    assert not (save / "aa" / ".balkd.lock").exists()
    hashed.clear()
    assert main(args) == 0 and hashed == [], "a later start hashes nothing"

    # stamps of other files (text replaced): the fingerprint differs, so nothing is stamped
    done["aa"].write_text(json.dumps(unstamped))
    for ext in ("bin", "idx"):
        shutil.copy(data / "bb" / f"train.{ext}", data / "aa" / f"train.{ext}")
    assert main(args) == 2 and json.loads(done["aa"].read_text()) == unstamped
