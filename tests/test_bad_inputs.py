"""The bad-input matrix, run through the real commands (fairseq-train --user-dir, balkd-*).

Every case must end in ONE line ``balkd-fairseq: error: ...`` (the last line on stderr) naming the
file, flag or language at fault, exit code 2, no traceback, and leave every file in the run's
save/output directory byte-for-byte as it was. fairseq-train cases start from a save directory that
holds a real previous run (checkpoint_last.pt, checkpoint_best.pt), so errors found after fairseq
resumed from it are covered too. Cases that are not errors (a teacher for a language not in the
data, test labels unseen in training, a teacher yielding NaN) are tested at the end.
"""
import contextlib
import importlib
import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import pytest
import torch
from _tiny_models import tiny_project, write_probing_data
from fairseq.data import Dictionary
from helpers import TINY_ARCH, distill_args, json_log_records, run_fairseq_train, write_split
from warm import python_command, warm_env

import balkd_fairseq  # noqa: F401  (allowlists what fairseq checkpoints contain)
from balkd_fairseq.locks import hold_directory_lock
from balkd_fairseq.outputs import write_marker

pytestmark = pytest.mark.slow

ERROR_PREFIX = "balkd-fairseq: error: "


@dataclass
class Invocation:
    command: str  # "fairseq-train" or the balkd_fairseq.cli module of a balkd-* command
    args: List[str]
    expected: List[str]  # fragments the error line must contain
    guarded: List[Path]  # directories whose files must be unchanged (none added, changed or removed)
    never_created: List[Path] = field(default_factory=list)


class Evil:
    """Unpickling this would run a shell command creating ``marker``: it must be refused, not executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ----------------------------------------------------------------------------- shared inputs
@pytest.fixture(scope="module")
def previous_run(tiny_data, teacher_spec, tmp_path_factory):
    """A save directory of a finished 2-update distillation run (what a user's save dir would hold)."""
    save = tmp_path_factory.mktemp("previous") / "save"
    run_fairseq_train(distill_args(tiny_data, save, teacher_spec, updates=2))
    assert (save / "checkpoint_last.pt").is_file() and (save / "checkpoint_best.pt").is_file()
    return save


@pytest.fixture
def env(tiny_data, tiny_teachers, teacher_spec, previous_run, tmp_path):
    return SimpleNamespace(data=tiny_data, teachers=tiny_teachers, spec=teacher_spec, previous=previous_run, tmp=tmp_path)


def copy_data(env, name="data") -> Path:
    return Path(shutil.copytree(env.data, env.tmp / name))


def spec_with(env, **replaced) -> str:
    paths = {lang: str(path) for lang, path in env.teachers.items()}
    paths.update({lang: str(path) for lang, path in replaced.items()})
    return ",".join(f"{lang}:{path}" for lang, path in paths.items())


def teacher_state(env, lang="bb") -> dict:
    return torch.load(env.teachers[lang], weights_only=True)


def train(env, expected, data=None, teachers=None, extra=()) -> Invocation:
    save = Path(shutil.copytree(env.previous, env.tmp / "save"))
    args = distill_args(data or env.data, save, teachers or env.spec, updates=4, extra=list(extra))
    return Invocation("fairseq-train", args, expected, [save])


# ----------------------------------------------------------------------------- fairseq-train cases
def case_language_missing_valid_split(env):
    data = copy_data(env)
    (data / "bb" / "valid.bin").unlink()
    return train(env, ["language 'bb' has no valid split", str(data / "bb" / "valid")], data=data)


def case_language_missing_train_split(env):  # found only after fairseq resumed from checkpoint_last.pt
    data = copy_data(env)
    (data / "bb" / "train.idx").unlink()
    return train(env, ["language 'bb' has no train split", str(data / "bb" / "train")], data=data)


def case_empty_language(env):
    data = copy_data(env)
    write_split(Dictionary.load(str(data / "dict.txt")), [], str(data / "bb" / "train"))
    return train(env, ["language 'bb' has an empty train split", str(data / "bb" / "train.bin")], data=data)


def case_unknown_language(env):
    return train(env, ["'zz'", "--languages"], extra=["--languages", "aa,zz"])


def case_missing_dictionary(env):
    data = copy_data(env)
    (data / "dict.txt").unlink()
    return train(env, [str(data / "dict.txt")], data=data)


def case_language_without_teacher(env):
    return train(env, ["no teacher for language(s) bb", "--teachers"], teachers=f"aa:{env.teachers['aa']}")


def case_teacher_checkpoint_not_found(env):
    missing = env.tmp / "nowhere" / "bb.pt"
    return train(env, ["teacher for language 'bb'", f"checkpoint not found: {missing}"], teachers=spec_with(env, bb=missing))


def case_teacher_dictionary_differs(env):
    """The teacher's dict.txt (next to its checkpoint): one symbol renamed, one extra at the end."""
    student = Dictionary.load(str(env.data / "dict.txt"))
    student.add_symbol("<mask>")
    lines = (env.data / "dict.txt").read_text(encoding="utf-8").splitlines()
    renamed_line = 5
    original = lines[renamed_line].split()[0]
    lines[renamed_line] = "zz_renamed 1"
    teacher_dir = env.tmp / "other_dict_teacher"
    teacher_dir.mkdir()
    (teacher_dir / "dict.txt").write_text("\n".join(lines + ["zz_extra 1"]) + "\n", encoding="utf-8")
    checkpoint = Path(shutil.copy(env.teachers["bb"], teacher_dir / "checkpoint.pt"))
    index = student.nspecial + renamed_line
    return train(env, [
        "teacher for language 'bb'", str(checkpoint), f"teacher has {len(student) + 1} symbols, student has {len(student)}",
        f"first difference at index {index}: teacher 'zz_renamed' vs student '{original}'",
    ], teachers=spec_with(env, bb=checkpoint))


def case_truncated_teacher_checkpoint(env):
    truncated = env.tmp / "truncated.pt"
    truncated.write_bytes(env.teachers["bb"].read_bytes()[:3000])
    return train(env, ["teacher for language 'bb'", f"cannot load checkpoint {truncated}: truncated or corrupt file"],
                 teachers=spec_with(env, bb=truncated))


def case_corrupt_teacher_checkpoint(env):
    corrupt = env.tmp / "corrupt.pt"
    corrupt.write_bytes(bytes(range(256)) * 64)
    return train(env, ["teacher for language 'bb'", f"cannot load checkpoint {corrupt}: not a readable checkpoint"],
                 teachers=spec_with(env, bb=corrupt))


def case_teacher_is_not_a_masked_lm(env):
    state = teacher_state(env)
    state["cfg"]["model"]._name = state["cfg"]["model"].arch = "transformer"
    state["cfg"]["task"]["_name"] = "translation"
    translation = env.tmp / "translation.pt"
    torch.save(state, translation)
    return train(env, ["teacher for language 'bb'", str(translation), "not a masked LM checkpoint", "'transformer'"],
                 teachers=spec_with(env, bb=translation))


def case_teacher_pickles_object_outside_allowlist(env):
    marker = env.tmp / "code_was_executed"
    state = teacher_state(env)
    state["extra_state"]["payload"] = Evil(marker)
    evil = env.tmp / "evil.pt"
    torch.save(state, evil)
    invocation = train(env, ["teacher for language 'bb'", str(evil), "it pickles posix.system, which is outside "
                             "balkd-fairseq's checkpoint allowlist (refused, not executed)"], teachers=spec_with(env, bb=evil))
    invocation.never_created.append(marker)
    return invocation


def case_teachers_json_invalid(env):
    spec = env.tmp / "teachers.json"
    spec.write_text('{"aa": "a.pt",', encoding="utf-8")
    return train(env, ["--teachers", str(spec), "not valid JSON"], teachers=str(spec))


def case_temperature_zero(env):
    return train(env, ["--temperature must be > 0, got 0.0"], extra=["--temperature", "0"])


def case_temperature_negative(env):
    return train(env, ["--temperature must be > 0, got -2.0"], extra=["--temperature", "-2"])


def case_hard_label_weight_above_one(env):
    return train(env, ["--hard-label-weight must be in [0, 1], got 1.5"], extra=["--hard-label-weight", "1.5"])


def case_hard_label_weight_negative(env):
    return train(env, ["--hard-label-weight must be in [0, 1], got -0.1"], extra=["--hard-label-weight", "-0.1"])


# ----------------------------------------------------------------------------- balkd-* cases
def probe(env, task, lang, split, bad_line_number, bad_line, expected):
    """balkd-probe on valid probing files except one line; OUT already holds an earlier result."""
    probe_dir = env.tmp / "PROBE"
    write_probing_data(str(probe_dir))
    ext = "conllu" if task == "pos" else "iob2"
    path = probe_dir / task / lang / f"{split}.{ext}"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[bad_line_number - 1] = bad_line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = env.tmp / "DATA"
    data.mkdir()
    shutil.copy(env.data / "dict.txt", data / "dict.txt")
    (data / "spm.model").write_bytes(b"not read: the data files are checked before any model is loaded")
    out = env.tmp / "OUT"
    (out / "m").mkdir(parents=True)
    (out / "m" / "probe.json").write_text('{"earlier": "result"}', encoding="utf-8")
    args = ["--checkpoint", f"m={env.teachers['aa']}", "--data", str(data), "--languages", "aa,bb", "--probe-dir",
            str(probe_dir), "--output-dir", str(out), "--tasks", task, "--cpu"]
    return Invocation("probe", args, [f"{path}:{bad_line_number}:", *expected], [out])


def case_conllu_malformed_line(env):
    return probe(env, "pos", "bb", "test", 4, "3\tonly\tthree", ["malformed CoNLL-U line"])


def case_conllu_sentences_without_a_blank_line(env):  # were read as one sentence, cut at the encoder's length
    invocation = probe(env, "pos", "bb", "train", 1, "# sent_id = 0", [])  # line 1 as written: edited below
    path = env.tmp / "PROBE" / "pos" / "bb" / "train.conllu"
    lines = path.read_text(encoding="utf-8").splitlines()
    blank = lines.index("")
    path.write_text("\n".join(lines[:blank] + lines[blank + 1:]) + "\n", encoding="utf-8")
    restart = blank + 3  # 1-based: the next sentence's '# sent_id' and '# text' lines, then its word 1
    invocation.expected = [f"{path}:{restart}:", "token id 1 after", "without a blank line between sentences"]
    return invocation


def case_iob2_malformed_line(env):
    return probe(env, "ner", "aa", "train", 2, "aa:word\tX-PER", ["'X-PER' is not an IOB2 tag"])


def case_raw_text_invalid_utf8(env):
    raw = env.tmp / "raw"
    raw.mkdir()
    (raw / "de.txt").write_text("".join(f"a good line {i}\n" for i in range(30)), encoding="utf-8")
    (raw / "xx.txt").write_bytes(b"line one\nline two\nline \xff three\n" + b"more text\n" * 20)
    work = env.tmp / "work"
    out = work / "out"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    write_marker(out, "balkd-prepare", complete=True)  # an earlier output, which --force may replace
    args = ["--raw", f"de={raw / 'de.txt'},xx={raw / 'xx.txt'}", "--out", str(out), "--force", "--quiet",
            "--vocab-size", "50", "--valid-lines", "2", "--test-lines", "2"]
    return Invocation("prepare", args, [str(raw / "xx.txt"), "line 3", "UTF-8"], [work])


def good_raw_dir(env) -> Path:
    raw = env.tmp / "corpus" / "raw"
    raw.mkdir(parents=True)
    (raw / "de.txt").write_text("".join(f"a good line {i}\n" for i in range(30)), encoding="utf-8")
    return raw


def prepare_into(raw: Path, out: Path) -> List[str]:
    return ["--raw-dir", str(raw), "--out", str(out), "--force", "--quiet", "--vocab-size", "50",
            "--valid-lines", "2", "--test-lines", "2"]


def case_prepare_force_onto_the_raw_dir(env):  # issue 14: deleted the user's raw text
    raw = good_raw_dir(env)
    return Invocation("prepare", prepare_into(raw, raw), [str(raw), "is or contains the input"], [raw.parent])


def case_prepare_force_onto_a_parent_of_the_raw_dir(env):
    raw = good_raw_dir(env)
    write_marker(raw.parent, "balkd-prepare", complete=True)  # even one that looks like an earlier output
    return Invocation("prepare", prepare_into(raw, raw.parent), [str(raw.parent), "input"], [raw.parent])


def case_prepare_force_onto_a_directory_it_did_not_create(env):
    raw = good_raw_dir(env)
    mine = env.tmp / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work", encoding="utf-8")
    return Invocation("prepare", prepare_into(raw, mine), [str(mine), "not created by balkd-fairseq"], [mine])


def case_prepare_out_with_a_colon(env):  # fairseq would cut the data path at ':'
    raw = good_raw_dir(env)
    return Invocation("prepare", prepare_into(raw, env.tmp / "data:v2"), ["--out", "':'"], [raw.parent],
                      never_created=[env.tmp / "data:v2"])


def case_teachers_json_duplicate_language(env):  # json would keep the last teacher for 'aa' silently
    spec = env.tmp / "teachers.json"
    spec.write_text(f'{{"aa": "{env.teachers["aa"]}", "bb": "{env.teachers["bb"]}", "aa": "{env.teachers["bb"]}"}}',
                    encoding="utf-8")
    return train(env, ["--teachers", str(spec), "duplicate key 'aa'"], teachers=str(spec))


def case_save_dir_in_use_by_another_run(env):  # both runs used to exit 0, overwriting each other's checkpoints
    invocation = train(env, ["--save-dir", "in use by process", f"{os.getpid()} on"])
    hold_directory_lock(invocation.guarded[0], "--save-dir")  # this test process plays the running first run
    return invocation


def case_train_bin_truncated(env):  # a ValueError traceback at the first batch reading past the file's end
    data = copy_data(env)
    binary = data / "bb" / "train.bin"
    binary.write_bytes(binary.read_bytes()[:100])
    return train(env, ["language 'bb'", f"{binary} is truncated (100 bytes"], data=data)


def case_student_save_dir_inside_the_data(env):  # wrote DATA/ckpt/dict.txt; 'ckpt' then broke every command on DATA
    data = copy_data(env)
    args = distill_args(data, data / "ckpt", env.spec, updates=2)
    return Invocation("fairseq-train", args, ["--save-dir", "lies inside the data directory"], [data],
                      never_created=[data / "ckpt"])


def case_max_tokens_below_the_longest_block(env):  # fairseq's "Sentences lengths should not exceed" assertion
    return train(env, ["--max-tokens 6 is smaller than the 'train' split's longest block ("], extra=["--max-tokens", "6"])


def case_balkd_train_without_arch(env):  # fairseq's RuntimeError with no message
    save = Path(shutil.copytree(env.previous, env.tmp / "save"))
    args = [a for a in distill_args(env.data, save, env.spec) if a not in ("--arch", "roberta_base")]
    return Invocation("train", args, ["--arch is missing", "e.g. --arch roberta_base"], [save])


def case_train_teachers_best_without_validation(env):  # trained every teacher, then "no checkpoint_best.pt"
    save = env.tmp / "TEACHERS"
    save.mkdir()
    (save / "notes.txt").write_text("the user's", encoding="utf-8")
    return Invocation("train_teachers", [str(env.data), "--save-dir", str(save), "--use-checkpoint", "best", "--",
                                         *TINY_ARCH, "--disable-validation"],
                      ["--use-checkpoint best needs validation", "--disable-validation"], [save],
                      never_created=[save / "aa"])


def eval_lm(env, checkpoint, expected, data=None):
    out = env.tmp / "OUT"
    (out / "m").mkdir(parents=True)
    (out / "m" / "lm.json").write_text('{"earlier": "result"}', encoding="utf-8")
    args = ["--checkpoint", f"m={checkpoint}", "--data", str(data or env.data), "--languages", "aa,bb", "--split",
            "valid", "--output-dir", str(out), "--tokens-per-sample", "32", "--cpu"]
    return Invocation("eval_lm", args, expected, [out])


def case_eval_language_missing_split(env):
    data = copy_data(env)
    (data / "bb" / "valid.idx").unlink()
    return eval_lm(env, env.teachers["aa"], ["language 'bb' has no valid split", str(data / "bb" / "valid")], data=data)


def case_eval_truncated_checkpoint(env):
    truncated = env.tmp / "truncated.pt"
    truncated.write_bytes(env.teachers["aa"].read_bytes()[:3000])
    return eval_lm(env, truncated, [f"cannot load checkpoint {truncated}: truncated or corrupt file"])


def case_eval_corrupt_checkpoint(env):
    corrupt = env.tmp / "corrupt.pt"
    corrupt.write_bytes(bytes(range(256)) * 64)
    return eval_lm(env, corrupt, [f"cannot load checkpoint {corrupt}: not a readable checkpoint"])


def case_eval_checkpoint_is_not_a_masked_lm(env):
    state = teacher_state(env, "aa")
    state["cfg"]["model"]._name = state["cfg"]["model"].arch = "transformer"
    state["cfg"]["task"]["_name"] = "translation"
    translation = env.tmp / "translation.pt"
    torch.save(state, translation)
    return eval_lm(env, translation, ["--checkpoint", str(translation), "not a masked LM checkpoint", "'transformer'"])


def case_eval_checkpoint_pickles_object_outside_allowlist(env):
    marker = env.tmp / "code_was_executed"
    state = teacher_state(env, "aa")
    state["extra_state"]["payload"] = Evil(marker)
    evil = env.tmp / "evil.pt"
    torch.save(state, evil)
    invocation = eval_lm(env, evil, [f"cannot load checkpoint {evil}: it pickles posix.system, which is outside "
                                     "balkd-fairseq's checkpoint allowlist (refused, not executed)"])
    invocation.never_created.append(marker)
    return invocation


# probe cases (branch probe)
# issue 14 review (verify14): found beyond the list
def case_train_teachers_save_dir_is_the_data(env):  # wrote checkpoints, logs and dict.txt into DATA/<lang>/
    data = copy_data(env)
    return Invocation("train_teachers", [str(data), "--save-dir", str(data)],
                      ["--save-dir", str(data), "data directory"], [data])


def case_synth_zipf_exponent_nan(env):  # an IndexError traceback; inf generated a one-word corpus with exit 0
    out, kept = env.tmp / "SYNTH", env.tmp / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's file beside the output\n", encoding="utf-8")
    return Invocation("synth", ["--out", str(out), "--zipf-exponent", "nan", "--quiet"], ["--zipf-exponent", "nan"],
                      [kept], never_created=[out])


def case_eval_max_samples_negative(env):  # was read as "all blocks" without a word
    invocation = eval_lm(env, env.previous / "checkpoint_last.pt", ["--max-samples", "-1"])
    invocation.args += ["--max-samples", "-1"]
    return invocation


def case_prepare_flag_not_a_number(env):  # argparse's usage block and '<prog>: error:' line, not the project's one line
    raw = good_raw_dir(env)
    out = env.tmp / "DATA_OUT"
    return Invocation("prepare", ["--raw-dir", str(raw), "--out", str(out), "--vocab-size", "many"],
                      ["--vocab-size", "'many'"], [raw], never_created=[out])


def probe_run(env, expected, extra=(), earlier='{"earlier": "result"}', dict_text=None, checkpoint=None):
    """balkd-probe on valid probing files; OUT/m/probe.json already holds ``earlier``."""
    probe_dir = env.tmp / "PROBE"
    write_probing_data(str(probe_dir))
    data = env.tmp / "DATA"
    data.mkdir()
    (data / "dict.txt").write_text(dict_text or (env.data / "dict.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (data / "spm.model").write_bytes(b"not read: every check below comes before the SentencePiece model is loaded")
    out = env.tmp / "OUT"
    (out / "m").mkdir(parents=True)
    (out / "m" / "probe.json").write_text(earlier, encoding="utf-8")
    args = ["--checkpoint", f"m={checkpoint or env.teachers['aa']}", "--data", str(data), "--languages", "aa,bb",
            "--probe-dir", str(probe_dir), "--output-dir", str(out), "--cpu", *extra]
    return Invocation("probe", args, expected, [out])


def case_probe_lr_negative(env):
    return probe_run(env, ["--lr must be a finite number > 0, got -1.0"], extra=["--lr", "-1"])


def case_probe_lr_nan(env):
    return probe_run(env, ["--lr must be a finite number > 0, got nan"], extra=["--lr", "nan"])


def case_probe_epochs_zero(env):
    return probe_run(env, ["--epochs must be at least 1, got 0"], extra=["--epochs", "0"])


def case_probe_seed_negative(env):
    return probe_run(env, ["--seed must be in [0, 2^63), got -3"], extra=["--seed", "-3"])


def case_probe_batch_size_not_a_number(env):
    return probe_run(env, ["argument --batch-size: invalid int value: 'many'"], extra=["--batch-size", "many"])


def case_probe_tasks_empty(env):
    return probe_run(env, ["--tasks is empty: choose pos, ner or pos,ner"], extra=["--tasks", ""])


def case_probe_layer_out_of_range(env):
    return probe_run(env, ["--layer 99 is out of range", "layers 0 (embeddings) .."], extra=["--layer", "99"])


def case_probe_dictionary_differs(env):
    """--data's dict.txt has one symbol renamed (same size); the checkpoint's own dict.txt sits beside it."""
    lines = (env.data / "dict.txt").read_text(encoding="utf-8").splitlines()
    original = lines[3].split()[0]
    lines[3] = "zz_renamed 1"
    own = env.tmp / "own"
    own.mkdir()
    shutil.copy(env.data / "dict.txt", own / "dict.txt")
    checkpoint = Path(shutil.copy(env.teachers["aa"], own / "checkpoint.pt"))
    data_dict = env.tmp / "DATA" / "dict.txt"
    return probe_run(env, ["--data", f"{data_dict} is not the dictionary of the checkpoint {checkpoint}",
                           f"first difference at symbol 7: '{original}' in {own / 'dict.txt'}, 'zz_renamed' in {data_dict}"],
                     dict_text="\n".join(lines) + "\n", checkpoint=checkpoint)


def case_probe_merge_across_checkpoints(env):
    earlier = {"kind": "probing", "checkpoint_sha256": "0" * 64, "tasks": {"ner": {"languages": ["aa", "bb"]}}}
    return probe_run(env, ["OUT/m/probe.json holds results of another checkpoint", "(sha256 000000000000 there"],
                     extra=["--tasks", "pos"], earlier=json.dumps(earlier))


def case_probe_beside_lm_scores_of_another_checkpoint(env):  # balkd-report showed both as one model
    invocation = probe_run(env, ["holds results of another checkpoint", "(sha256 000000000000 there, sha256 "])
    (env.tmp / "OUT" / "m" / "lm.json").write_text(json.dumps({"kind": "lm", "checkpoint_sha256": "0" * 64}),
                                                   encoding="utf-8")
    return invocation


def case_eval_beside_probes_of_another_checkpoint(env):  # balkd-report showed both as one model
    invocation = eval_lm(env, env.teachers["aa"], ["OUT/m/probe.json holds results of another checkpoint",
                                                   "(sha256 000000000000 there, sha256 "])
    (env.tmp / "OUT" / "m" / "probe.json").write_text(
        json.dumps({"kind": "probing", "checkpoint": str(env.teachers["bb"]), "checkpoint_sha256": "0" * 64}),
        encoding="utf-8")
    return invocation


def case_eval_checkpoint_is_a_directory(env):  # the --save-dir given for the checkpoint in it
    return eval_lm(env, env.teachers["aa"].parent, ["--checkpoint m:", "is a directory, not a checkpoint file",
                                                    "checkpoint_best.pt"])


def case_eval_over_lm_scores_of_another_checkpoint(env):  # a seed loop with one default NAME kept the last seed
    invocation = eval_lm(env, env.teachers["aa"], ["OUT/m/lm.json holds results of another checkpoint",
                                                   "refusing to replace them"])
    (env.tmp / "OUT" / "m" / "lm.json").write_text(
        json.dumps({"kind": "lm", "checkpoint": str(env.teachers["bb"]), "checkpoint_sha256": "0" * 64}),
        encoding="utf-8")
    return invocation


def case_eval_output_of_a_model_is_a_file(env):  # a traceback after every model was scored, the others written
    invocation = eval_lm(env, env.teachers["aa"], ["--output-dir", "OUT/z exists and is not a directory"])
    (env.tmp / "OUT" / "z").write_text("the user's file", encoding="utf-8")
    invocation.args += ["--checkpoint", f"z={env.teachers['bb']}"]
    return invocation


def case_probe_two_checkpoints_of_one_name(env):  # both results would go to OUT/m, the later overwriting
    return probe_run(env, ["--checkpoint: two models share a name (m, m)"],
                     extra=["--checkpoint", f"m={env.teachers['bb']}"])


def case_probe_output_holds_another_file(env):
    return probe_run(env, ["probe.json exists and is not a balkd-probe result"], extra=["--tasks", "pos"])


# entry (issue 14): fairseq's batching drops the last len % --required-batch-size-multiple blocks of a split
# (validation splits are now batched with a multiple of 1, so only a training split can be this small)
def case_train_subset_smaller_than_the_batch_size_multiple(env):  # was fairseq's "The dataset is empty" traceback
    return train(env, ["'valid_bb' split of language 'bb'", "fewer than --required-batch-size-multiple 8"],
                 extra=["--train-subset", "valid_bb", "--required-batch-size-multiple", "8", "--reset-data-settings"])


def case_valid_subset_names_a_language_not_in_the_run(env):  # was "language 'aa' has no valid_zz split"
    return train(env, ["split 'valid_zz'", "'zz' is not one of the languages (aa,bb)"],
                 extra=["--valid-subset", "valid_zz"])


def case_best_checkpoint_metric_of_a_language_not_in_the_run(env):  # was a KeyError after the first epoch
    return train(env, ["--best-checkpoint-metric distill_zz", "'zz' is not one of the languages (aa,bb)"],
                 extra=["--best-checkpoint-metric", "distill_zz"])


def case_model_with_fewer_positions_than_a_block(env):  # fairseq skipped nearly every block, with one warning
    return train(env, ["at most 16 positions (--max-positions)", "--tokens-per-sample 32"],
                 extra=["--max-positions", "16", "--reset-optimizer"])


CASES = {name[len("case_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


# ----------------------------------------------------------------------------- running a case
# A balkd-* command's checks run in this process through its console entry point ``main(argv)`` (what the
# console script calls): the same code and exit code, without ~4 s of torch/fairseq start-up per row. A bug's
# exception then fails the test where a subprocess would have printed a traceback. BALKD_BAD_INPUTS_SUBPROCESS=1
# runs every row as a separate process instead. fairseq-train rows always run as a process of their own (its
# exit is under test), forked from a warm interpreter (tests/warm.py; BALKD_TESTS_COLD=1 starts each cold).
IN_PROCESS = os.environ.get("BALKD_BAD_INPUTS_SUBPROCESS", "") in ("", "0")


def run(invocation: Invocation) -> subprocess.CompletedProcess:
    if invocation.command == "fairseq-train":
        return run_fairseq_train(invocation.args, check=False, warm=True)
    if IN_PROCESS:
        return run_in_process(invocation)
    cmd = [sys.executable, "-m", f"balkd_fairseq.cli.{invocation.command}", *invocation.args]
    return subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)


def run_in_process(invocation: Invocation) -> subprocess.CompletedProcess:
    command = importlib.import_module(f"balkd_fairseq.cli.{invocation.command}")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the command points logging at the captured stderr
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = command.main([str(arg) for arg in invocation.args])
            except SystemExit as exit_:  # argparse's own errors
                code = exit_.code
    finally:
        root.handlers[:], root.level = handlers, level
    return subprocess.CompletedProcess(invocation.args, code, stdout.getvalue(), stderr.getvalue())


def snapshot(directories: List[Path]) -> Dict[str, bytes]:
    return {str(p): p.read_bytes() for d in directories for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_error_line_exit_2_and_overwrites_nothing(case, env):
    invocation = CASES[case](env)
    before = snapshot(invocation.guarded)
    assert before, "every case guards some existing output"
    proc = run(invocation)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert lines[-1].startswith(ERROR_PREFIX), lines[-5:]
    assert sum(ERROR_PREFIX.strip() in line for line in lines) == 1, lines
    for fragment in invocation.expected:
        assert fragment in lines[-1], (fragment, lines[-1])
    assert snapshot(invocation.guarded) == before, "a file in the save/output directory was written"
    for path in invocation.never_created:
        assert not path.exists(), path


# ----------------------------------------------------------------------------- not errors
def test_teacher_for_a_language_the_run_leaves_out_is_a_warning(tiny_data, teacher_spec, tmp_path):
    proc = run_fairseq_train(distill_args(tiny_data, tmp_path / "s", teacher_spec, updates=1, extra=["--languages", "aa"]),
                             warm=True)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line and "'bb'" in line]
    # 'bb' is in the data: the warning must not say it is not (--languages left it out)
    assert len(warnings) == 1 and "is not used: 'bb' is not among this run's languages (aa)" in warnings[0], warnings
    assert [r["num_updates"] for r in json_log_records(proc.stdout, "train_inner")] == ["1"]


def test_teacher_with_non_finite_outputs_is_skipped_warned_and_counted(tiny_data, tiny_teachers, tmp_path):
    state = torch.load(tiny_teachers["bb"], weights_only=True)
    state["model"]["encoder.lm_head.bias"][:] = float("nan")
    nan_teacher = tmp_path / "nan_bb.pt"
    torch.save(state, nan_teacher)
    shutil.copy(tiny_teachers["bb"].parent / "dict.txt", tmp_path / "dict.txt")  # its dictionary, beside it
    spec = f"aa:{tiny_teachers['aa']},bb:{nan_teacher}"
    proc = run_fairseq_train(distill_args(tiny_data, tmp_path / "s", spec, updates=4), warm=True)
    log = proc.stdout + proc.stderr
    records = json_log_records(proc.stdout, "train_inner")
    assert len(records) == 4
    counted = [int(float(r["nonfinite_teacher_batches"])) for r in records]
    assert sum(counted) >= 1 and set(counted) <= {0, 1}  # one batch per update: at most one skip each
    warned = [line for line in log.splitlines() if "teacher for 'bb' gave non-finite soft labels" in line]
    assert len(warned) >= sum(counted), warned
    assert not any("teacher for 'aa' gave non-finite" in line for line in log.splitlines())
    for record in records:
        assert math.isfinite(float(record["loss"])) and math.isfinite(float(record["gnorm"])), record
        assert record.get("distill_bb") is None  # bb's distill loss was skipped in every batch
    assert all(math.isfinite(float(r["distill_aa"])) for r in records if r.get("distill_aa") is not None)
    assert any(r.get("distill_aa") is not None for r in records)  # aa still distilled
    train_epoch = json_log_records(proc.stdout, "train")
    assert train_epoch and int(float(train_epoch[-1]["train_nonfinite_teacher_batches"])) == sum(
        c for c, r in zip(counted, records) if r["epoch"] == train_epoch[-1]["epoch"])


def test_test_labels_unseen_in_training_are_scored_as_errors(tmp_path_factory, tmp_path):
    """balkd-probe end to end: a POS tag only in bb's test file cannot be predicted, so it counts as wrong, with a
    warning naming it."""
    project = tiny_project(tmp_path_factory)
    probe_dir = tmp_path / "PROBE"
    shutil.copytree(project.probe_dir, probe_dir)
    test_file = probe_dir / "pos" / "bb" / "test.conllu"
    rows = test_file.read_text(encoding="utf-8").splitlines()
    relabelled = [row.replace("\tVERB\t", "\tUNSEEN\t") for row in rows]
    test_file.write_text("\n".join(relabelled) + "\n", encoding="utf-8")
    words = sum(1 for row in rows if row and not row.startswith("#"))
    unseen = sum(1 for row in relabelled if "\tUNSEEN\t" in row)
    assert 0 < unseen < words

    out = tmp_path / "OUT"
    cmd = [*python_command(), "-m", "balkd_fairseq.cli.probe", "--checkpoint", f"tiny={project.checkpoint}", "--data",
           project.data, "--languages", "aa,bb", "--probe-dir", str(probe_dir), "--tasks", "pos", "--output-dir",
           str(out), "--epochs", "30", "--lr", "1e-2", "--cpu"]
    proc = subprocess.run(cmd, env=warm_env(dict(os.environ, OMP_NUM_THREADS="1")), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    result = json.loads((out / "tiny" / "probe.json").read_text(encoding="utf-8"))
    matrix = result["tasks"]["pos"]["matrix"]
    assert "UNSEEN" not in result["tasks"]["pos"]["labels"]["bb"]
    assert matrix["bb"]["bb"] <= 1 - unseen / words + 1e-9
    assert matrix["aa"]["bb"] <= 1 - unseen / words + 1e-9
    assert matrix["bb"]["bb"] > 0.5  # the rest is still tagged (the synthetic tags follow from the words)
    for probe_lang in ("aa", "bb"):  # scored as errors, but not silently: one warning per probe
        assert f"pos {probe_lang}: label(s) UNSEEN never occur in the probe's training sentences, so the test words " \
               f"carrying them count as errors (bb: {unseen})" in proc.stderr, proc.stderr[-3000:]
