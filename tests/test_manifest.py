"""The teacher manifest in the student's checkpoints, and resuming with other teachers."""
import os
import shutil

import pytest
import torch
from helpers import distill_args, json_log_records, run_fairseq_train

import balkd_fairseq  # noqa: F401  (allowlists what fairseq checkpoints contain)
from balkd_fairseq.data.dictionary_hash import dictionary_sha256
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.files import file_sha256
from balkd_fairseq.soft_labels.manifest import check_resumed_manifest, manifest_differences

ERROR_PREFIX = "balkd-fairseq: error: "


def record(lang, path="/t/x.pt", sha="a" * 64, dict_sha="d" * 64):
    return {"language": lang, "path": path, "sha256": sha, "dictionary_sha256": dict_sha}


def test_same_content_at_another_path_is_the_same_teacher():
    assert manifest_differences([record("aa", "/old/aa.pt")], [record("aa", "/new/aa.pt")]) == []
    check_resumed_manifest([record("aa", "/old/aa.pt")], [record("aa", "/new/aa.pt")], reset_teachers=False)


def test_other_content_dictionary_or_languages_differ():
    old = [record("aa"), record("bb", "/t/bb.pt", sha="b" * 64)]
    assert manifest_differences(old, [record("aa"), record("bb", "/t/bb.pt", sha="c" * 64)]) == [
        f"'bb': /t/bb.pt (sha256 {'b' * 12}, dictionary {'d' * 12}) in the checkpoint, "
        f"now /t/bb.pt (sha256 {'c' * 12}, dictionary {'d' * 12})"
    ]
    assert len(manifest_differences(old, [record("aa"), record("bb", "/t/bb.pt", sha="b" * 64, dict_sha="e" * 64)])) == 1
    assert manifest_differences(old, [record("aa")]) == ["languages aa,bb in the checkpoint, aa now"]
    with pytest.raises(BalkdError, match="different teachers: languages aa,bb in the checkpoint, aa now; pass --reset-teachers"):
        check_resumed_manifest(old, [record("aa")], reset_teachers=False)
    check_resumed_manifest(old, [record("aa")], reset_teachers=True)  # accepted (with a warning)
    check_resumed_manifest(old, None, reset_teachers=False)  # no teachers in this process: nothing to compare


# ----------------------------------------------------------------------------- through fairseq-train
def manifest_of(checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    recorded = state["task_state"]["teacher_manifest"]
    assert state["extra_state"]["BalancedDistillTask"]["task_state"]["teacher_manifest"] == recorded  # the resume copy
    return recorded


def error_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-1].startswith(ERROR_PREFIX)
    return lines[-1]


@pytest.mark.slow
def test_checkpoint_records_teachers_and_resume_checks_them(tiny_data, tiny_teachers, teacher_spec, tmp_path):
    save = tmp_path / "student"
    run_fairseq_train(distill_args(tiny_data, save, teacher_spec, updates=2))
    from fairseq.data import Dictionary

    student_dict = Dictionary.load(str(tiny_data / "dict.txt"))
    student_dict.add_symbol("<mask>")
    assert manifest_of(save / "checkpoint_last.pt") == [
        {"language": lang, "path": os.path.abspath(path), "sha256": file_sha256(str(path)),
         "dictionary_sha256": dictionary_sha256(student_dict)}
        for lang, path in sorted(tiny_teachers.items())
    ]
    from fairseq.models.roberta import RobertaModel

    hub = RobertaModel.from_pretrained(str(save), "checkpoint_last.pt", data_name_or_path=str(tiny_data), bpe=None)
    assert hub.task.teacher_manifest == manifest_of(save / "checkpoint_last.pt")

    # the same teachers, moved: same content, so the same teacher set
    moved = tmp_path / "moved"
    moved.mkdir()
    moved_bb = shutil.copy(tiny_teachers["bb"], moved / "bb.pt")
    shutil.copy(tiny_teachers["bb"].parent / "dict.txt", moved / "dict.txt")  # a teacher moves with its dictionary
    proc = run_fairseq_train(distill_args(tiny_data, save, f"aa:{tiny_teachers['aa']},bb:{moved_bb}", updates=3))
    assert [r["num_updates"] for r in json_log_records(proc.stdout, "train_inner")] == ["3"]
    assert "teacher for 'bb' moved" in proc.stdout + proc.stderr
    assert manifest_of(save / "checkpoint_last.pt")[1]["path"] == str(moved_bb)

    # another teacher for bb (aa's checkpoint): refused, nothing written
    before = {p.name: p.read_bytes() for p in save.iterdir()}
    other = f"aa:{tiny_teachers['aa']},bb:{tiny_teachers['aa']}"
    line = error_line(run_fairseq_train(distill_args(tiny_data, save, other, updates=5), check=False))
    assert "trained with different teachers" in line and "'bb'" in line and str(moved_bb) in line
    assert str(tiny_teachers["aa"]) in line and "--reset-teachers" in line
    # another language set: refused (a changed data setting, found before the teachers are compared)
    line = error_line(run_fairseq_train(distill_args(tiny_data, save, f"aa:{tiny_teachers['aa']}", updates=5,
                                                     extra=["--languages", "aa"]), check=False))
    assert "with --languages 'aa': the run was started with 'aa,bb'" in line and "--reset-data-settings" in line
    line = error_line(run_fairseq_train(distill_args(tiny_data, save, f"aa:{tiny_teachers['aa']}", updates=5,
                                                     extra=["--languages", "aa", "--reset-data-settings"]), check=False))
    assert "languages aa,bb in the checkpoint, aa now" in line and "--reset-teachers" in line
    assert {p.name: p.read_bytes() for p in save.iterdir()} == before

    # --reset-teachers: resumes with the new teacher set, which the next checkpoint records
    proc = run_fairseq_train(distill_args(tiny_data, save, other, updates=5, extra=["--reset-teachers"]))
    assert "Loaded checkpoint" in proc.stdout and "--reset-teachers: resuming with a different teacher set" in proc.stdout + proc.stderr
    assert [r["num_updates"] for r in json_log_records(proc.stdout, "train_inner")] == ["4", "5"]
    recorded = manifest_of(save / "checkpoint_last.pt")
    assert [(r["language"], r["path"]) for r in recorded] == [("aa", str(tiny_teachers["aa"])), ("bb", str(tiny_teachers["aa"]))]
