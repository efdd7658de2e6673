"""Loading and checking teacher checkpoints (real fairseq checkpoints trained by the fixtures)."""
import json
import logging
import os

import pytest
import torch

from balkd_fairseq.errors import BalkdError
from balkd_fairseq.teachers import TeacherSet, check_coverage, parse_teacher_spec
from helpers import make_tiny_data
from test_task import make_task


class Evil:
    """Unpickling this would create a marker file: a checkpoint carrying it must be refused."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_parse_spec_string_and_json(tmp_path):
    assert parse_teacher_spec("de:/x/de.pt, en:/x/en.pt") == {"de": "/x/de.pt", "en": "/x/en.pt"}
    spec = tmp_path / "teachers.json"
    spec.write_text(json.dumps({"de": "de.pt", "en": "/abs/en.pt"}))
    assert parse_teacher_spec(str(spec)) == {"de": str(tmp_path / "de.pt"), "en": "/abs/en.pt"}


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
    teachers = make_task(tiny_data, teachers=teacher_spec).load_teachers()
    assert set(teachers.models) == {0, 1}
    for model in teachers.models.values():
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    manifest = teachers.manifest()
    assert [m["language"] for m in manifest] == ["aa", "bb"]
    assert manifest[0]["path"] == os.path.abspath(tiny_teachers["aa"]) and len(manifest[0]["sha256"]) == 64


def test_teacher_dtype(tiny_data, teacher_spec):
    teachers = make_task(tiny_data, teachers=teacher_spec, teacher_dtype="bf16").load_teachers()
    assert all(p.dtype == torch.bfloat16 for p in teachers.models[0].parameters())


def test_dictionary_mismatch_names_language_sizes_and_symbol(tmp_path, tiny_teachers):
    other = make_tiny_data(tmp_path / "other", {"aa": 30, "bb": 30, "cc": 30})
    task = make_task(other, languages="aa,bb", teachers=f"aa:{tiny_teachers['aa']},bb:{tiny_teachers['bb']}")
    with pytest.raises(BalkdError, match=r"teacher for language 'aa'.*differs.*teacher has \d+ symbols, student has \d+; "
                                         r"first difference at index \d+"):
        task.load_teachers()


def test_truncated_checkpoint(tmp_path, tiny_data, tiny_teachers):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_teachers["bb"].read_bytes()[:2000])
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{broken}")
    with pytest.raises(BalkdError, match=r"teacher for language 'bb': cannot load checkpoint .*broken.pt"):
        task.load_teachers()


def test_missing_checkpoint(tiny_data, tiny_teachers):
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:/nowhere/bb.pt")
    with pytest.raises(BalkdError, match=r"teacher for language 'bb': checkpoint not found: /nowhere/bb.pt"):
        task.load_teachers()


def test_not_a_masked_lm(tmp_path, tiny_data, tiny_teachers):
    state = torch.load(tiny_teachers["bb"], weights_only=True)
    state["cfg"]["model"].arch = "transformer"
    state["cfg"]["model"]._name = "transformer"
    path = tmp_path / "mt.pt"
    torch.save(state, path)
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{path}")
    with pytest.raises(BalkdError, match=r"'bb'.*not a masked LM checkpoint \(architecture 'transformer'"):
        task.load_teachers()


def test_pickled_object_outside_allowlist_is_refused_not_executed(tmp_path, tiny_data, tiny_teachers):
    marker = tmp_path / "executed"
    state = torch.load(tiny_teachers["bb"], weights_only=True)
    state["extra_state"]["payload"] = Evil(marker)
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{path}")
    with pytest.raises(BalkdError, match=r"'bb'.*outside balkd-fairseq's checkpoint allowlist.*refused"):
        task.load_teachers()
    assert not marker.exists()
