"""How teachers run: the masked-positions-only last layer, and --teacher-offload's weight swapping."""
import pytest
import torch
from test_teacher_cache import make_task

from balkd_fairseq.soft_labels.manifest import TeacherRecord
from balkd_fairseq.soft_labels.online import TeacherSet, load_teacher, masked_lm_logits


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
