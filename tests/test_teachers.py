"""Loading and checking teacher checkpoints (real fairseq checkpoints trained by the fixtures)."""
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_data
from test_task import make_task

from balkd_fairseq.data.dictionary_hash import dict_file_sha256
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.soft_labels.online import TeacherSet
from balkd_fairseq.soft_labels.teacher_loading import TeacherSpec, check_coverage, parse_teacher_spec
from balkd_fairseq.tasks.balanced_distill import BalancedDistillConfig, BalancedDistillTask


class Evil:
    """Unpickling this would create a marker file: a checkpoint carrying it must be refused."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_parse_spec_string_and_json(tmp_path):
    assert parse_teacher_spec("de:/x/de.pt, en:/x/en.pt") == {"de": TeacherSpec("/x/de.pt"), "en": TeacherSpec("/x/en.pt")}
    spec = tmp_path / "teachers.json"
    spec.write_text(json.dumps({"de": "de.pt", "en": {"checkpoint": "/abs/en.pt", "dict": "en.dict.txt"}}))
    assert parse_teacher_spec(str(spec)) == {"de": TeacherSpec(str(tmp_path / "de.pt")),
                                             "en": TeacherSpec("/abs/en.pt", str(tmp_path / "en.dict.txt"))}
    assert parse_teacher_spec(str(spec))["de"].dictionary_file == str(tmp_path / "dict.txt")  # beside the checkpoint


def test_json_value_of_the_wrong_shape_is_refused(tmp_path):
    spec = tmp_path / "teachers.json"
    spec.write_text(json.dumps({"de": {"path": "de.pt"}}))
    with pytest.raises(BalkdError, match=r"value for 'de' must be a checkpoint path or"):
        parse_teacher_spec(str(spec))


@pytest.mark.parametrize("spec,match", [("de/x.pt", "cannot read"), ("de:a.pt,de:b.pt", "twice"), ("", "empty"),
                                        ("missing.json", "not found")])
def test_parse_spec_errors(spec, match):
    with pytest.raises(BalkdError, match=match):
        parse_teacher_spec(spec)


def test_coverage_missing_is_error_extra_is_warning(caplog):
    with pytest.raises(BalkdError, match="no teacher for language.*bb"):
        check_coverage(["aa", "bb"], {"aa": "a.pt"})
    with caplog.at_level(logging.WARNING):
        check_coverage(["aa"], {"aa": "a.pt", "zz": "z.pt"})
    assert "'zz'" in caplog.text


def test_teachers_load_frozen_with_manifest(tiny_data, teacher_spec, tiny_teachers):
    teachers = TeacherSet.from_task(make_task(tiny_data, teachers=teacher_spec))
    assert set(teachers.models) == {0, 1}
    for model in teachers.models.values():
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    manifest = teachers.manifest()
    assert [m["language"] for m in manifest] == ["aa", "bb"]
    assert manifest[0]["path"] == os.path.abspath(tiny_teachers["aa"]) and len(manifest[0]["sha256"]) == 64
    # each teacher's own dictionary (the dict.txt beside it), hashed as data/dictionary_hash.py does
    assert manifest[0]["dictionary_sha256"] == dict_file_sha256(str(tiny_teachers["aa"].parent / "dict.txt"))


def teacher_elsewhere(tmp_path, checkpoint, name="t"):
    """A copy of a teacher checkpoint with no dict.txt beside it (a teacher trained elsewhere)."""
    (tmp_path / name).mkdir()
    return Path(shutil.copy(checkpoint, tmp_path / name / "model.pt"))


def test_teacher_without_a_dictionary_is_refused(tmp_path, tiny_data, tiny_teachers):
    lonely = teacher_elsewhere(tmp_path, tiny_teachers["bb"])
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{lonely}")
    with pytest.raises(BalkdError, match=r"teacher for language 'bb': no dictionary for .*model.pt: .*dict.txt not found"):
        TeacherSet.from_task(task)


def test_dictionary_named_in_teachers_json(tmp_path, tiny_data, tiny_teachers):
    lonely = teacher_elsewhere(tmp_path, tiny_teachers["bb"])
    spec = tmp_path / "teachers.json"
    spec.write_text(json.dumps({"aa": str(tiny_teachers["aa"]),
                                "bb": {"checkpoint": str(lonely), "dict": str(tiny_data / "dict.txt")}}))
    manifest = TeacherSet.from_task(make_task(tiny_data, teachers=str(spec))).manifest()
    assert manifest[1]["path"] == str(lonely)
    assert manifest[1]["dictionary_sha256"] == dict_file_sha256(str(tiny_data / "dict.txt"))


def test_dictionary_that_does_not_fit_the_embedding_is_refused(tmp_path, tiny_data, tiny_teachers):
    state = torch.load(tiny_teachers["bb"], weights_only=True)
    for key in [k for k in state["model"] if k.endswith("embed_tokens.weight") or k.endswith("lm_head.weight")]:
        state["model"][key] = state["model"][key][:-1]
    smaller = tmp_path / "smaller"
    smaller.mkdir()
    torch.save(state, smaller / "checkpoint.pt")
    shutil.copy(tiny_teachers["bb"].parent / "dict.txt", smaller / "dict.txt")
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{smaller / 'checkpoint.pt'}")
    with pytest.raises(BalkdError, match=r"'bb'.*embeds \d+ symbols but its dictionary .*dict.txt has \d+"):
        TeacherSet.from_task(task)


def test_teacher_with_fewer_positions_than_the_blocks_is_refused(tiny_data, teacher_spec, tiny_teachers):
    cfg = BalancedDistillConfig(data=str(tiny_data), tokens_per_sample=128, seed=1, teachers=teacher_spec)
    task = BalancedDistillTask.setup_task(cfg)  # the teachers take 64 positions
    with pytest.raises(BalkdError, match=r"teacher for language 'aa': .*checkpoint_last.pt takes at most 64 positions "
                                         r"but .* --tokens-per-sample 128"):
        TeacherSet.from_task(task)


def test_teacher_dtype(tiny_data, teacher_spec):
    teachers = TeacherSet.from_task(make_task(tiny_data, teachers=teacher_spec, teacher_dtype="bf16"))
    assert all(p.dtype == torch.bfloat16 for p in teachers.models[0].parameters())


def test_dictionary_mismatch_names_language_sizes_and_symbol(tmp_path, tiny_teachers):
    other = make_tiny_data(tmp_path / "other", {"aa": 30, "bb": 30, "cc": 30})  # the student's dictionary differs
    task = make_task(other, languages="aa,bb", teachers=f"aa:{tiny_teachers['aa']},bb:{tiny_teachers['bb']}")
    with pytest.raises(BalkdError, match=r"teacher for language 'aa'.*differs.*teacher has \d+ symbols, student has \d+; "
                                         r"first difference at index \d+"):
        TeacherSet.from_task(task)


def test_truncated_checkpoint(tmp_path, tiny_data, tiny_teachers):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_teachers["bb"].read_bytes()[:2000])
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{broken}")
    with pytest.raises(BalkdError, match=r"teacher for language 'bb': cannot load checkpoint .*broken.pt"):
        TeacherSet.from_task(task)


def test_a_checkpoint_cut_anywhere_is_one_error_naming_it(tmp_path, tiny_teachers):
    # depending on where the cut falls torch raises RuntimeError, EOFError, or OSError (EINVAL from mmap)
    from balkd_fairseq.checkpoints import load_checkpoint_state

    whole = tiny_teachers["bb"].read_bytes()
    broken = tmp_path / "broken.pt"
    for cut in range(1000, len(whole), max(1, len(whole) // 60)):
        broken.write_bytes(whole[:cut])
        with pytest.raises(BalkdError, match=rf"CHECKPOINT: cannot load checkpoint {broken}: "):
            load_checkpoint_state(str(broken), "CHECKPOINT")


def test_a_teacher_being_retrained_with_force_is_refused(tmp_path, tiny_data, tiny_teachers):
    # its checkpoint is a few updates old (or gone) until the retraining finishes
    import shutil

    retraining = tmp_path / "bb"
    (retraining / ".previous").mkdir(parents=True)
    checkpoint = shutil.copy(tiny_teachers["bb"], retraining / "checkpoint_last.pt")
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{checkpoint}")
    with pytest.raises(BalkdError, match=r"teacher for language 'bb': .*bb is being retrained by balkd-train-teachers "
                                         r"--force"):
        TeacherSet.from_task(task)


def test_missing_checkpoint(tiny_data, tiny_teachers):
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:/nowhere/bb.pt")
    with pytest.raises(BalkdError, match=r"teacher for language 'bb': checkpoint not found: /nowhere/bb.pt"):
        TeacherSet.from_task(task)


def test_not_a_masked_lm(tmp_path, tiny_data, tiny_teachers):
    state = torch.load(tiny_teachers["bb"], weights_only=True)
    state["cfg"]["model"].arch = "transformer"
    state["cfg"]["model"]._name = "transformer"
    path = tmp_path / "mt.pt"
    torch.save(state, path)
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{path}")
    with pytest.raises(BalkdError, match=r"'bb'.*not a masked LM checkpoint \(architecture 'transformer'"):
        TeacherSet.from_task(task)


def test_pickled_object_outside_allowlist_is_refused_not_executed(tmp_path, tiny_data, tiny_teachers):
    marker = tmp_path / "executed"
    state = torch.load(tiny_teachers["bb"], weights_only=True)
    state["extra_state"]["payload"] = Evil(marker)
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{path}")
    with pytest.raises(BalkdError, match=r"'bb'.*outside balkd-fairseq's checkpoint allowlist.*refused"):
        TeacherSet.from_task(task)
    assert not marker.exists()


def test_the_fallback_model_is_named_by_its_flag():
    from balkd_fairseq.soft_labels.teacher_loading import FALLBACK_TEACHER, teacher_name

    assert teacher_name(FALLBACK_TEACHER) == "--teacher-fallback"
    assert teacher_name("de") == "teacher for language 'de'"
