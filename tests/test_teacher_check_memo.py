"""Teacher start-up checks from facts remembered beside the checkpoints and dictionaries (hash_memo.py)."""
import json
import shutil
from collections import Counter

import pytest
import torch
from test_task import make_task

from balkd_fairseq.checkpoints import CHECKPOINT_FACTS
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.files import file_sha256
from balkd_fairseq.hash_memo import memo_path, remembered
from balkd_fairseq.soft_labels.online import TeacherSet


def copy_teachers(tiny_teachers, root):
    """Fresh copies (no memos yet) of the fixture teachers, each with its dict.txt: ({lang: checkpoint}, --teachers)."""
    paths = {}
    for lang, checkpoint in tiny_teachers.items():
        (root / lang).mkdir(parents=True)
        paths[lang] = root / lang / "checkpoint.pt"
        shutil.copy(checkpoint, paths[lang])
        shutil.copy(checkpoint.parent / "dict.txt", root / lang / "dict.txt")
    return paths, ",".join(f"{lang}:{path}" for lang, path in paths.items())


def counting_loads(monkeypatch):
    """Counter of torch.load calls by file name, torch.load still working."""
    calls, real_load = Counter(), torch.load

    def load(f, *args, **kwargs):
        calls[str(f)] += 1
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    return calls


def refuse_loads(monkeypatch):
    def load(f, *args, **kwargs):
        raise AssertionError(f"unpickled {f} although its facts were remembered")

    monkeypatch.setattr(torch, "load", load)


def test_a_second_start_checks_every_teacher_without_unpickling(tiny_data, tiny_teachers, tmp_path, monkeypatch):
    paths, spec = copy_teachers(tiny_teachers, tmp_path)
    first = TeacherSet.from_task(make_task(tiny_data, teachers=spec, max_resident_teachers=1)).manifest()
    assert [r["sha256"] for r in first] == [file_sha256(str(paths[lang])) for lang in ["aa", "bb"]]

    refuse_loads(monkeypatch)
    again = TeacherSet.from_task(make_task(tiny_data, teachers=spec, max_resident_teachers=1))
    assert again.manifest() == first and not again.models

    # a dictionary rewritten after its hash was remembered (same size: two symbols swapped) is still refused,
    # naming the first differing symbol, without the checkpoint being unpickled
    dict_file = paths["bb"].parent / "dict.txt"
    lines = dict_file.read_text(encoding="utf-8").splitlines(keepends=True)
    dict_file.write_text("".join([lines[1], lines[0], *lines[2:]]), encoding="utf-8")
    swapped = [line.split()[0] for line in lines[:2]]
    with pytest.raises(BalkdError, match=rf"teacher for language 'bb': dictionary of .*differs from the student's dict.txt: "
                                         rf"teacher has \d+ symbols, student has \d+; first difference at index 4: "
                                         rf"teacher '{swapped[1]}' vs student '{swapped[0]}'"):
        TeacherSet.from_task(make_task(tiny_data, teachers=spec, max_resident_teachers=1))


def test_all_resident_teachers_are_unpickled_once_each(tiny_data, tiny_teachers, tmp_path, monkeypatch):
    paths, spec = copy_teachers(tiny_teachers, tmp_path)
    calls = counting_loads(monkeypatch)
    TeacherSet.from_task(make_task(tiny_data, teachers=spec))  # no memos yet: the load for the facts builds the model
    assert calls == Counter({str(path): 1 for path in paths.values()})
    calls.clear()
    teachers = TeacherSet.from_task(make_task(tiny_data, teachers=spec))  # facts remembered: loaded only to build
    assert calls == Counter({str(path): 1 for path in paths.values()}) and set(teachers.models) == {0, 1}


def _rewrite(path, edit):
    state = torch.load(path, weights_only=True)
    edit(state["cfg"]["model"])
    torch.save(state, path)


def test_a_rewritten_checkpoint_is_checked_again(tiny_data, tiny_teachers, tmp_path):
    paths, spec = copy_teachers(tiny_teachers, tmp_path)
    _rewrite(paths["bb"], lambda model: None)  # as torch.save writes it, so that the edit below keeps the size
    task = make_task(tiny_data, teachers=spec, max_resident_teachers=1)
    TeacherSet.from_task(task)
    memo = json.loads(open(memo_path(str(paths["bb"]))).read())
    assert memo[CHECKPOINT_FACTS]["max_positions"] == 64 and memo[CHECKPOINT_FACTS]["masked_lm"]

    size = paths["bb"].stat().st_size  # fewer positions: the same number of bytes, only the change times tell
    _rewrite(paths["bb"], lambda model: setattr(model, "max_positions", 16))
    assert paths["bb"].stat().st_size == size
    with pytest.raises(BalkdError, match=r"teacher for language 'bb': .*checkpoint.pt takes at most 16 positions"):
        TeacherSet.from_task(task)

    def not_roberta(model):
        model.arch = model._name = "transformer"
    _rewrite(paths["bb"], not_roberta)
    with pytest.raises(BalkdError, match=r"'bb'.*not a masked LM checkpoint \(architecture 'transformer'"):
        TeacherSet.from_task(task)
    assert json.loads(open(memo_path(str(paths["bb"]))).read())[CHECKPOINT_FACTS]["arch"] == "transformer"


def test_a_malformed_fact_is_recomputed_and_the_others_kept(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"contents")
    computed = []

    def compute():
        computed.append(1)
        return 7

    def parse(value):
        return value if isinstance(value, int) else None

    assert remembered(str(path), "seven", compute, parse) == 7
    assert remembered(str(path), "seven", compute, parse) == 7 and len(computed) == 1
    assert remembered(str(path), "eight", lambda: 8, parse) == 8
    record = json.loads(open(memo_path(str(path))).read())
    open(memo_path(str(path)), "w").write(json.dumps(dict(record, seven="7")))
    assert remembered(str(path), "seven", compute, parse) == 7 and len(computed) == 2
    assert json.loads(open(memo_path(str(path))).read())["eight"] == 8


def test_a_teacher_replaced_after_start_up_is_refused_when_it_is_loaded(tiny_data, tiny_teachers, tmp_path):
    paths, spec = copy_teachers(tiny_teachers, tmp_path)
    teachers = TeacherSet.from_task(make_task(tiny_data, teachers=spec, max_resident_teachers=1))
    teachers._model(0)  # aa as checked: loads
    shutil.copy(paths["aa"], paths["bb"])  # bb retrained in place while the run goes on
    with pytest.raises(BalkdError, match=rf"teacher for language 'bb': {paths['bb']} was replaced or changed after "
                                         "the run checked it at start-up"):
        teachers._model(1)


def test_a_teacher_trained_on_another_language_is_named_in_a_warning(tiny_data, tiny_teachers, tmp_path, caplog):
    from balkd_fairseq.checkpoints import load_checkpoint_state

    paths, spec = copy_teachers(tiny_teachers, tmp_path)
    state = load_checkpoint_state(str(paths["bb"]), "test")
    state["cfg"]["dataset"]["train_subset"] = "aa/train"  # as balkd-train-teachers trains aa's teacher
    torch.save(state, str(paths["bb"]))
    with caplog.at_level("WARNING"):
        TeacherSet.from_task(make_task(tiny_data, teachers=spec, max_resident_teachers=1))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "trained on" in r.getMessage()]
    assert len(warnings) == 1 and "teacher for language 'bb'" in warnings[0] and "'aa/train'" in warnings[0], warnings
