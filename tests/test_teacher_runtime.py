"""How teachers run: the masked-positions-only last layer, --teacher-offload's weight swapping, and lazy loads."""
import shutil

import pytest
import torch
from test_teacher_cache import make_task

from balkd_fairseq.checkpoint_compat import allow_fairseq_checkpoints
from balkd_fairseq.checkpoints import ModelConfigs, load_checkpoint_state, model_key
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.soft_labels.manifest import TeacherRecord
from balkd_fairseq.soft_labels.online import TeacherSet, masked_lm_logits
from balkd_fairseq.soft_labels.teacher_loading import DTYPES, build_teacher, load_teacher


def padded_batch(task, rows=5, length=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    d = task.source_dictionary
    tokens = torch.randint(d.nspecial, len(d) - 1, (rows, length), generator=gen)
    tokens[:, 0] = d.bos()
    masked = torch.rand(rows, length, generator=gen) < 0.3
    masked[:, 1] = True
    for row, pad_from in ((1, 12), (3, 6)):  # right padding, as fairseq collates
        tokens[row, pad_from:] = d.pad()
        masked[row, pad_from:] = False
    tokens[masked] = task.mask_idx
    return tokens, masked


@pytest.mark.parametrize("lang", ["aa", "bb"])
def test_masked_last_layer_matches_fairseq_forward(tiny_data, tiny_teachers, lang):
    task = make_task(tiny_data)
    model = load_teacher(task, lang, str(tiny_teachers[lang]))
    tokens, masked = padded_batch(task)
    with torch.inference_mode():
        expected = model(tokens, masked_tokens=masked)[0]
        got = masked_lm_logits(model, tokens, masked)
    assert got.shape == expected.shape == (int(masked.sum()), len(task.source_dictionary))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_model_in_training_mode_runs_its_own_forward(tiny_data, tiny_teachers):
    task = make_task(tiny_data)
    model = load_teacher(task, "aa", str(tiny_teachers["aa"])).train()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    tokens, masked = padded_batch(task)
    masked_lm_logits(model, tokens, masked)
    assert calls == [1]


def offloaded_teachers(task, tiny_teachers, offload=True):
    models = {i: load_teacher(task, lang, str(tiny_teachers[lang])) for i, lang in enumerate(["aa", "bb"])}
    records = [TeacherRecord(lang, str(tiny_teachers[lang]), "-", "-") for lang in ["aa", "bb"]]
    # on CPU, host-to-host copies stand in for host-to-device ones: the logic is the same
    return TeacherSet(models, records, vocab_size=len(task.source_dictionary), sample_address=task.sample_address,
                      offload=offload, offload_on_cpu=True)


def test_offload_moves_one_teacher_at_a_time_and_never_copies_back(tiny_data, tiny_teachers):
    task = make_task(tiny_data)
    teachers = offloaded_teachers(task, tiny_teachers)
    models, cpu = teachers.models, torch.device("cpu")
    teachers._place(cpu)
    host = {i: [p.data_ptr() for p in m.parameters()] for i, m in models.items()}

    def on_host(i):
        return [p.data_ptr() for p in models[i].parameters()] == host[i]

    def on_device(i):
        return not {p.data_ptr() for p in models[i].parameters()} & set(host[i])

    teachers.on_device(0, cpu)
    assert on_device(0) and on_host(1)
    moved = [p.data_ptr() for p in models[0].parameters()]
    teachers.on_device(0, cpu)  # resident: nothing moves
    assert [p.data_ptr() for p in models[0].parameters()] == moved
    teachers.on_device(1, cpu)
    assert on_host(0) and on_device(1)  # teacher 0 points at its own host copy again: nothing copied back
    assert models[0].encoder.lm_head.weight is models[0].encoder.sentence_encoder.embed_tokens.weight  # ties kept
    assert teachers.parameter_bytes(0) == sum(t.numel() * t.element_size()
                                              for t in list(models[0].parameters()) + list(models[0].buffers()))


def test_offloaded_teachers_give_the_same_logits(tiny_data, tiny_teachers):
    task = make_task(tiny_data)
    tokens, masked = padded_batch(task)
    lang_ids = torch.tensor([0, 1, 0, 1, 1])
    plain = offloaded_teachers(task, tiny_teachers, offload=False).masked_logits(tokens, masked, lang_ids)[0]
    swapped = offloaded_teachers(task, tiny_teachers)
    for _ in range(2):  # each batch moves both teachers in turn
        torch.testing.assert_close(swapped.masked_logits(tokens, masked, lang_ids)[0], plain)
    assert swapped._resident == 1


def test_max_resident_teachers_loads_on_first_use_and_drops_the_least_recent(tiny_data, teacher_spec):
    all_resident = TeacherSet.from_task(make_task(tiny_data, teachers=teacher_spec))
    capped = TeacherSet.from_task(make_task(tiny_data, teachers=teacher_spec, max_resident_teachers=1))
    assert capped.manifest() == all_resident.manifest()  # every teacher checked at start-up
    assert len(capped.models) == 0 and capped.take_stats()["teacher_loads"] == 0
    task = make_task(tiny_data)
    tokens, masked = padded_batch(task)
    lang_ids = torch.tensor([0, 1, 0, 1, 1])
    expected = all_resident.masked_logits(tokens, masked, lang_ids)[0]
    torch.testing.assert_close(capped.masked_logits(tokens, masked, lang_ids)[0], expected)
    assert list(capped.models) == [1]  # aa was dropped when bb was needed
    stats = capped.take_stats()
    assert stats["teacher_loads"] == 2 and stats["teacher_load_seconds"] > 0
    capped.masked_logits(tokens, masked, torch.ones_like(lang_ids))  # bb again: resident, nothing loaded
    assert capped.take_stats()["teacher_loads"] == 0


def test_max_resident_teachers_with_offload_swaps_loaded_teachers(tiny_data, teacher_spec):
    task = make_task(tiny_data, teachers=teacher_spec, max_resident_teachers=1)
    capped = TeacherSet.from_task(task)
    capped.offload = capped.offload_on_cpu = True
    tokens, masked = padded_batch(task)
    lang_ids = torch.tensor([0, 1, 0, 1, 1])
    expected = TeacherSet.from_task(make_task(tiny_data, teachers=teacher_spec)).masked_logits(tokens, masked, lang_ids)[0]
    for _ in range(2):
        torch.testing.assert_close(capped.masked_logits(tokens, masked, lang_ids)[0], expected)
    assert list(capped.models) == [1] and set(capped._host) == {1} and capped._resident == 1


# ------------------------------------------------------------------------------ lazy loads: refill, parse once
def rewritten_checkpoint(source, target, change):
    """A copy of checkpoint ``source`` at ``target`` (with its dict.txt) after ``change(state)``."""
    allow_fairseq_checkpoints()
    state = torch.load(source, map_location="cpu", weights_only=True)
    change(state)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    shutil.copy(source.parent / "dict.txt", target.parent / "dict.txt")
    return target


def built_the_old_way(task, lang, path):
    return build_teacher(task, lang, load_checkpoint_state(str(path), "test"), str(path))


def one_language_logits(teachers, tokens, masked, lang_id):
    return teachers.masked_logits(tokens, masked, torch.full((len(tokens),), lang_id))[0]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_lazy_loads_refill_the_dropped_model_with_bit_identical_logits(tiny_data, tiny_teachers, teacher_spec, dtype):
    task = make_task(tiny_data, teachers=teacher_spec, max_resident_teachers=1, teacher_dtype=dtype)
    capped = TeacherSet.from_task(task)
    tokens, masked = padded_batch(task)
    with torch.inference_mode():
        expected = [masked_lm_logits(built_the_old_way(task, lang, tiny_teachers[lang]).to(DTYPES[dtype]), tokens,
                                     masked).float() for lang in ["aa", "bb"]]
    assert not torch.equal(expected[0], expected[1])  # two teachers of one architecture, different weights
    rng = torch.get_rng_state()
    models = []
    for lang_id in [0, 1, 0, 1, 1, 0]:
        assert torch.equal(one_language_logits(capped, tokens, masked, lang_id), expected[lang_id])
        model = capped.models[lang_id]
        models.append(model)
        checkpoint = load_checkpoint_state(str(tiny_teachers[["aa", "bb"][lang_id]]), "test")["model"]
        held = model.state_dict()
        assert all(torch.equal(held[k], v.to(held[k].dtype)) for k, v in checkpoint.items())  # nothing of the other
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert {p.dtype for p in model.parameters()} == {DTYPES[dtype]}
    assert all(m is models[0] for m in models)  # one model, refilled: the seeds and data of aa and bb differ
    assert capped.take_stats()["teacher_loads"] == 5  # every switch of language
    assert torch.equal(torch.get_rng_state(), rng)  # the one build drew its random init from a forked RNG


def test_a_teacher_of_other_hyperparameters_gets_a_model_of_its_own(tiny_data, tiny_teachers, tmp_path):
    def more_dropout(state):
        state["cfg"]["model"].dropout = 0.3  # a hyperparameter RoBERTa declares; no effect in eval mode

    other = rewritten_checkpoint(tiny_teachers["bb"], tmp_path / "bb" / "checkpoint.pt", more_dropout)
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{other}", max_resident_teachers=1)
    capped = TeacherSet.from_task(task)
    tokens, masked = padded_batch(task)
    with torch.inference_mode():
        expected = masked_lm_logits(built_the_old_way(task, "bb", other), tokens, masked)
    one_language_logits(capped, tokens, masked, 0)
    first = capped.models[0]
    assert torch.equal(one_language_logits(capped, tokens, masked, 1), expected)
    assert capped.models[1] is not first and capped.models[1].encoder.sentence_encoder.dropout_module.p == 0.3


def test_a_checkpoint_that_does_not_fit_fails_as_it_did(tiny_data, tiny_teachers, tmp_path):
    def shorter_output_bias(state):
        state["model"]["encoder.lm_head.bias"] = state["model"]["encoder.lm_head.bias"][:-1].clone()

    bad = rewritten_checkpoint(tiny_teachers["bb"], tmp_path / "bb" / "checkpoint.pt", shorter_output_bias)
    task = make_task(tiny_data, teachers=f"aa:{tiny_teachers['aa']},bb:{bad}", max_resident_teachers=1)
    capped = TeacherSet.from_task(task)  # the start-up checks read no weights
    tokens, masked = padded_batch(task)
    one_language_logits(capped, tokens, masked, 0)
    with pytest.raises(BalkdError) as lazily:
        one_language_logits(capped, tokens, masked, 1)
    with pytest.raises(BalkdError) as built:
        build_teacher(task, "bb", load_checkpoint_state(str(bad), "test"), str(bad))
    assert str(lazily.value) == str(built.value) and "cannot build the model stored in" in str(lazily.value)


def test_model_configs_parse_each_configuration_once_and_key_the_architecture(tiny_teachers, tmp_path):
    configs = ModelConfigs()
    path = rewritten_checkpoint(tiny_teachers["aa"], tmp_path / "aa" / "checkpoint.pt", lambda state: None)
    first, key = configs.load(str(path), "test")
    again, again_key = configs.load(str(path), "test")
    assert configs.load(str(path), "test")[0]["cfg"] is again["cfg"] and again_key == key  # parsed once
    assert vars(again["cfg"].model) == vars(first["cfg"].model)
    other, other_key = configs.load(str(tiny_teachers["bb"]), "test")
    assert other["cfg"].model.seed != first["cfg"].model.seed and other_key == key  # training arguments are no part
    del first, again, other  # their weights map the file rewritten below

    def more_dropout(state):
        state["cfg"]["model"].dropout = 0.3

    rewritten_checkpoint(tiny_teachers["aa"], path, more_dropout)  # the same file, another configuration
    changed, changed_key = configs.load(str(path), "test")
    assert changed["cfg"].model.dropout == 0.3 and changed_key != key
    assert model_key(changed["cfg"].model) == changed_key
