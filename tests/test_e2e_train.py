"""fairseq-train end to end with the plugin: distillation, resume, from_pretrained, baselines, errors, DDP."""
import shutil

import pytest
import torch
from helpers import TINY_ARCH, distill_args, json_log_records, make_tiny_data, run_balkd_train, run_fairseq_train

import balkd_fairseq  # noqa: F401  (allowlists what fairseq checkpoints contain)


def load_without_data(checkpoint, tmp_path, name="checkpoint_best.pt"):
    """from_pretrained on a folder holding only the checkpoint and dict.txt (the caller removed DATA)."""
    from fairseq.models.roberta import RobertaModel

    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    shutil.copy(checkpoint, folder / name)
    hub = RobertaModel.from_pretrained(str(folder), name, data_name_or_path=str(folder), bpe=None)
    tokens = hub.task.source_dictionary.encode_line("aa1 aa2 x0", add_if_not_exist=False).long()
    assert hub.extract_features(tokens).shape == (1, 4, 32)
    return hub


def without_data(data, tmp_path):
    """dict.txt kept beside the model folder, then the whole DATA tree removed."""
    (tmp_path / "model").mkdir(exist_ok=True)
    shutil.copy(data / "dict.txt", tmp_path / "model" / "dict.txt")
    shutil.rmtree(data)

pytestmark = pytest.mark.slow


def test_distill_resume_and_from_pretrained(tiny_data, teacher_spec, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / "data")  # removed at the end: the student loads without it
    save, tb = tmp_path / "student", tmp_path / "tb"
    first = run_fairseq_train(distill_args(data, save, teacher_spec, updates=6,
                                           extra=["--tensorboard-logdir", str(tb), "--valid-subset", "valid,valid_aa,valid_bb"]))
    records = json_log_records(first.stdout, "train_inner")
    assert [r["num_updates"] for r in records] == ["1", "2", "3", "4", "5", "6"]
    assert {"distill_loss", "distill_aa", "distill_bb", "teacher_entropy", "top1_agree", "hard_loss"} <= set(records[0])
    assert json_log_records(first.stdout, "valid_bb") and "balance=subsample epoch 2" in first.stderr + first.stdout

    state = torch.load(save / "checkpoint_last.pt", weights_only=True)
    assert state["criterion"] is None if "criterion" in state else True
    assert not any(k.startswith("teacher") for k in state["model"])

    resumed = run_fairseq_train(distill_args(data, save, teacher_spec, updates=9))
    assert "Loaded checkpoint" in resumed.stdout + resumed.stderr
    assert [r["num_updates"] for r in json_log_records(resumed.stdout, "train_inner")] == ["7", "8", "9"]

    from fairseq.models.roberta import RobertaModel

    hub = RobertaModel.from_pretrained(str(save), "checkpoint_last.pt", data_name_or_path=str(data), bpe=None)
    tokens = hub.task.source_dictionary.encode_line("aa1 aa2 x0", add_if_not_exist=False).long()
    assert hub.extract_features(tokens).shape == (1, 4, 32)
    assert hub.task.languages == ["aa", "bb"]

    without_data(data, tmp_path)  # Ours: the distilled student, only dict.txt beside it
    assert load_without_data(save / "checkpoint_last.pt", tmp_path).task.languages == ["aa", "bb"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_events = EventAccumulator(str(tb / "train_inner")).Reload()
    assert {"distill_aa", "distill_bb", "distill_loss"} <= set(train_events.Tags()["scalars"])
    assert "loss" in EventAccumulator(str(tb / "valid_bb")).Reload().Tags()["scalars"]


@pytest.mark.parametrize("balance", ["none", "subsample"])  # HL and HL-balanced
def test_hard_label_baseline_needs_no_teachers_and_loads_without_data(tmp_path, balance):
    data = make_tiny_data(tmp_path / "data", {"aa": 60, "bb": 20})
    proc = run_fairseq_train([
        str(data), "--task", "balanced_distill", "--balance", balance, "--criterion", "masked_lm", *TINY_ARCH,
        "--tokens-per-sample", "32", "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001", "--max-update", "3",
        "--save-dir", str(tmp_path / "hl"), "--cpu", "--required-batch-size-multiple", "1", "--log-format", "json", "--log-interval", "1", "--num-workers", "0",
    ])
    assert len(json_log_records(proc.stdout, "train_inner")) == 3
    assert "teacher for" not in proc.stdout + proc.stderr  # no teacher was loaded

    # the checkpoint fairseq saved records the discovered languages and the dictionary's hash
    from fairseq import checkpoint_utils

    from balkd_fairseq.data.dictionary_hash import dict_file_sha256, recorded_dictionary_sha256, recorded_languages

    state = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "hl" / "checkpoint_best.pt"))
    assert recorded_languages(state) == ["aa", "bb"]
    assert recorded_dictionary_sha256(state) == dict_file_sha256(str(data / "dict.txt"))
    # the save dir is a model on its own: its dict.txt beside the checkpoints
    assert (tmp_path / "hl" / "dict.txt").read_bytes() == (data / "dict.txt").read_bytes()

    without_data(data, tmp_path)
    hub = load_without_data(tmp_path / "hl" / "checkpoint_best.pt", tmp_path)
    assert hub.task.languages == ["aa", "bb"]


def test_checkpoint_that_records_no_languages_still_loads(tmp_path):
    """Checkpoints written before languages and the dictionary hash were recorded: languages unknown, model loads."""
    data = make_tiny_data(tmp_path / "data", {"aa": 30, "bb": 20})
    run_fairseq_train([
        str(data), "--task", "balanced_distill", "--criterion", "masked_lm", *TINY_ARCH, "--tokens-per-sample", "32",
        "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001", "--max-update", "1", "--save-dir", str(tmp_path / "s"),
        "--cpu", "--num-workers", "0", "--disable-validation",
    ])
    state = torch.load(tmp_path / "s" / "checkpoint_last.pt", weights_only=True)
    state["cfg"]["task"]["languages"] = ""
    for key in ("train_subset", "reset_data_settings"):
        state["cfg"]["task"].pop(key)
    state["task_state"] = {}
    torch.save(state, tmp_path / "old.pt")
    without_data(data, tmp_path)
    hub = load_without_data(tmp_path / "old.pt", tmp_path)
    assert hub.task.languages == []


@pytest.mark.parametrize("extra,message", [
    (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
    (["--hard-label-weight", "2"], "--hard-label-weight must be in [0, 1], got 2.0"),
])
def test_bad_flags_give_one_line_and_exit_2(tiny_data, teacher_spec, tmp_path, extra, message):
    proc = run_fairseq_train(distill_args(tiny_data, tmp_path / "s", teacher_spec, extra=extra), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"balkd-fairseq: error: {message}"
    assert "Traceback" not in proc.stderr


def test_missing_teacher_fails_before_training_and_overwrites_nothing(tiny_data, tiny_teachers, tmp_path):
    save = tmp_path / "s"
    save.mkdir()
    (save / "checkpoint_last.pt").write_bytes(b"previous run")
    proc = run_fairseq_train(distill_args(tiny_data, save, f"aa:{tiny_teachers['aa']}"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("balkd-fairseq: error: no teacher for language(s) bb")
    assert (save / "checkpoint_last.pt").read_bytes() == b"previous run"


def test_two_process_gloo_run_completes_saves_and_resumes(tiny_data, teacher_spec, tmp_path):
    save = tmp_path / "ddp"
    args = distill_args(tiny_data, save, teacher_spec, updates=3)
    proc = run_balkd_train(args, nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (save / "checkpoint_last.pt").is_file()
    assert json_log_records(proc.stdout + proc.stderr, "valid_aa"), "balkd-train adds per-language validation subsets"
    args = distill_args(tiny_data, save, teacher_spec, updates=5)
    resumed = run_balkd_train(args, nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Loaded checkpoint" in resumed.stdout + resumed.stderr


def test_train_subset_other_is_balanced_as_train(tiny_data, tmp_path):
    """--train-subset NAME reaches the task through fairseq's config: the same balanced epoch as 'train'."""
    other = shutil.copytree(tiny_data, tmp_path / "other")
    for lang in ("aa", "bb"):
        for ext in ("bin", "idx"):
            (other / lang / f"train.{ext}").rename(other / lang / f"big.{ext}")

    def losses(data, save, extra):
        proc = run_fairseq_train([
            str(data), "--task", "balanced_distill", "--criterion", "masked_lm", *TINY_ARCH, "--tokens-per-sample", "32",
            "--batch-size", "4", "--optimizer", "adam", "--lr", "0.001", "--max-epoch", "1", "--save-dir", str(save),
            "--cpu", "--seed", "1", "--log-format", "json", "--log-interval", "1", "--num-workers", "0",
            "--no-epoch-checkpoints", "--disable-validation", "--required-batch-size-multiple", "1", *extra,
        ])
        return [r["loss"] for r in json_log_records(proc.stdout, "train_inner")]

    as_train = losses(tiny_data, tmp_path / "a", [])
    as_other = losses(other, tmp_path / "b", ["--train-subset", "big"])
    assert len(as_train) == 7  # ceil(2 languages x 13 blocks of the smaller one / batch size 4)
    assert as_other == as_train
