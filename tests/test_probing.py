"""Probing: metrics and per-sentence counts, the train x test matrix, the frozen encoder, the
dictionary check and balkd-probe (results, per-item scores, merging tasks, undefined F1)."""
import json
import os
import random
import shutil

import numpy as np
import pytest
import torch
from _tiny_models import tiny_project
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

import balkd_fairseq  # noqa: F401  (allowlists what fairseq checkpoints contain)
from balkd_fairseq.cli import probe as probe_cli
from balkd_fairseq.data.dictionary_check import EMBED_KEY as EMBEDDING_KEY
from balkd_fairseq.data.dictionary_check import check_checkpoint_dictionary as check_dictionary
from balkd_fairseq.data.dictionary_hash import DICTIONARY_HASH_KEY, dict_file_sha256
from balkd_fairseq.data.sentencepiece_check import load_processor
from balkd_fairseq.data.subword_alignment import AlignedSentence, TaggedSentence
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.eval import probing_matrix
from balkd_fairseq.eval.features import FrozenEncoder
from balkd_fairseq.eval.item_scores import group_items, read_items
from balkd_fairseq.eval.probe_training import ProbeTrainingConfig, epoch_order, train_probe
from balkd_fairseq.eval.probing_data import EncodedSplit, LabelSet, encode_split, read_tagged
from balkd_fairseq.eval.probing_run import LanguageData, ProbingTaskData, encode_task, read_task, run_task
from balkd_fairseq.eval.tagging_metrics import f1_from_counts, ner_counts, ner_f1, pos_accuracy, pos_counts


# ---------------------------------------------------------------- metrics
def test_ner_f1_exact_match():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert ner_f1(gold, gold) == 1.0


def test_ner_f1_partial_span_is_wrong():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # PER span cut short: 1 of 2 predicted and 1 of 2 gold entities right
    assert ner_f1(gold, pred) == pytest.approx(0.5)


def test_ner_f1_mislabeled_span_is_wrong():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG"]]
    pred = [["B-LOC", "I-LOC", "O", "B-LOC"], ["B-ORG"]]  # P = 2/3, R = 2/3
    assert ner_f1(gold, pred) == pytest.approx(2 / 3)


def test_ner_f1_strict_iob2_needs_b_to_open_an_entity():
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]  # lenient conlleval would accept this span; strict IOB2 does not
    assert ner_f1(gold, pred) == 0.0


def test_ner_f1_extra_entity_lowers_precision_and_cut_words_count_as_o():
    gold = [["B-PER", "O", "O"], ["B-LOC"]]
    pred = [["B-PER", "O", "B-MISC"], [None]]  # P = 1/2, R = 1/2
    assert ner_f1(gold, pred) == pytest.approx(0.5)


def test_pos_accuracy_counts_unseen_and_cut_words_as_errors():
    gold = [["NOUN", "VERB", "X"], ["DET"]]  # X never seen in training
    pred = [["NOUN", "NOUN", "NOUN"], [None]]
    assert pos_accuracy(gold, pred) == pytest.approx(1 / 4)


def test_label_set_maps_unseen_labels_past_the_classifier():
    labels = LabelSet(["B", "A"])
    assert labels.ids(["A", "B", "Z"]) == [1, 0, 2] and labels.unseen_id == 2


# ---------------------------------------------------------------- matrix
def test_matrix_in_language_and_zero_shot_arithmetic():
    langs = ["de", "en", "tr"]
    m = {
        "de": {"de": 0.9, "en": 0.5, "tr": 0.2},
        "en": {"de": 0.4, "en": 0.8, "tr": 0.3},
        "tr": {"de": 0.1, "en": 0.6, "tr": 0.7},
    }
    summary = probing_matrix.summarize(m, langs)
    assert list(summary["matrix"]) == langs and all(list(row) == langs for row in summary["matrix"].values())
    assert summary["in_language"] == {"de": 0.9, "en": 0.8, "tr": 0.7}
    assert summary["zero_shot"] == pytest.approx({"de": (0.4 + 0.1) / 2, "en": (0.5 + 0.6) / 2, "tr": (0.2 + 0.3) / 2})


def test_matrix_single_language_has_no_zero_shot_and_incomplete_rows_fail():
    assert probing_matrix.zero_shot({"de": {"de": 0.5}}, ["de"]) == {"de": None}
    with pytest.raises(ValueError, match="en"):
        probing_matrix.in_language({"de": {"de": 0.5, "en": 0.1}}, ["de", "en"])


# ---------------------------------------------------------------- per-sentence counts
NER_TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _random_tags(rng, length):
    return [rng.choice(NER_TAGS) for _ in range(length)]


def test_ner_counts_per_sentence():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"], ["B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "O"], [None]]
    counts = ner_counts(gold, pred)
    assert counts["tp"].tolist() == [1, 0, 0]
    assert counts["pred"].tolist() == [2, 1, 0]
    assert counts["gold"].tolist() == [2, 0, 1]
    assert all(v.dtype == np.int32 for v in counts.values())


def test_ner_counts_reproduce_seqeval_strict_f1_exactly():
    """Random tag sequences (malformed predictions included): the F1 of the summed counts is seqeval's, bit for bit."""
    rng = random.Random(0)
    checked = 0
    for _ in range(300):
        lengths = [rng.randint(1, 8) for _ in range(rng.randint(1, 6))]
        gold = [_random_tags(rng, n) for n in lengths]
        pred = [_random_tags(rng, n) for n in lengths]
        counts = ner_counts(gold, pred)
        if not counts["gold"].sum():
            continue  # no gold entity: undefined here, 0.0 in seqeval (tested below)
        assert f1_from_counts(counts) == float(f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0))
        # the per-sentence counts are the per-sentence scores seqeval gives each sentence alone
        for i in range(len(gold)):
            one = {k: v[i:i + 1] for k, v in counts.items()}
            if counts["gold"][i]:
                expected = f1_score(gold[i:i + 1], pred[i:i + 1], mode="strict", scheme=IOB2, zero_division=0)
                assert f1_from_counts(one) == float(expected)
        checked += 1
    assert checked > 250


def test_all_o_gold_f1_is_undefined_not_zero():
    gold = [["O", "O"], ["O"]]
    assert ner_f1(gold, [["B-PER", "O"], ["O"]]) is None
    assert ner_f1(gold, gold) is None
    assert ner_f1([["B-PER"]], [["O"]]) == 0.0  # gold entities, none found: a real zero


def test_pos_counts_per_sentence_sum_to_accuracy():
    gold = [["NOUN", "VERB", "X"], ["DET"]]
    pred = [["NOUN", "NOUN", "X"], [None]]
    counts = pos_counts(gold, pred)
    assert counts["correct"].tolist() == [2, 0] and counts["total"].tolist() == [3, 1]
    assert pos_accuracy(gold, pred) == 2 / 4


def test_zero_shot_skips_undefined_scores():
    m = {"aa": {"aa": 0.5, "bb": None, "cc": 0.2}, "bb": {"aa": 0.4, "bb": None, "cc": 0.6},
         "cc": {"aa": 0.1, "bb": None, "cc": 0.9}}
    summary = probing_matrix.summarize(m, ["aa", "bb", "cc"])
    assert summary["in_language"]["bb"] is None
    assert summary["zero_shot"] == pytest.approx({"aa": 0.25, "bb": None, "cc": 0.4})


# ---------------------------------------------------------------- dictionary check (no model needed)
def _dict_file(path, symbols):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s} 1\n" for s in symbols), encoding="utf-8")
    return str(path)


def _state(rows, recorded=None):
    state = {"model": {EMBEDDING_KEY: torch.zeros(rows, 2)}}
    if recorded is not None:
        state["task_state"] = {DICTIONARY_HASH_KEY: recorded}
    return state


SYMBOLS = ["alpha", "beta", "gamma", "delta"]
ROWS = 4 + len(SYMBOLS) + 1  # fairseq's specials, the file's symbols, <mask>


def test_dictionary_check_with_recorded_hash(tmp_path):
    data = _dict_file(tmp_path / "DATA" / "dict.txt", SYMBOLS)
    other = _dict_file(tmp_path / "OTHER" / "dict.txt", ["alpha", "beta", "zeta", "delta"])
    checkpoint = str(tmp_path / "ckpt" / "checkpoint.pt")
    check_dictionary(_state(ROWS, dict_file_sha256(data)), checkpoint, data)
    with pytest.raises(BalkdError) as err:
        check_dictionary(_state(ROWS, dict_file_sha256(data)), checkpoint, other)
    message = str(err.value)
    assert other in message and checkpoint in message and dict_file_sha256(data)[:12] in message
    # with the checkpoint's own dict.txt beside it, the message names the first differing symbol
    _dict_file(tmp_path / "ckpt" / "dict.txt", SYMBOLS)
    with pytest.raises(BalkdError, match=r"OTHER/dict.txt is not the dictionary of the checkpoint .*ckpt/checkpoint.pt: first difference at symbol 6: 'gamma' in .*ckpt/dict.txt, 'zeta' in .*OTHER/dict.txt"):
        check_dictionary(_state(ROWS, dict_file_sha256(data)), checkpoint, other)


def test_dictionary_check_names_the_symbol_from_the_data_directory_the_checkpoint_records(tmp_path):
    """A student's save dir holds no dict.txt; the data directory it was trained on (cfg.task.data) may."""
    data = _dict_file(tmp_path / "DATA" / "dict.txt", SYMBOLS)
    other = _dict_file(tmp_path / "OTHER" / "dict.txt", ["alpha", "beta", "zeta", "delta"])
    checkpoint = str(tmp_path / "ckpt" / "checkpoint.pt")
    state = {**_state(ROWS, dict_file_sha256(data)), "cfg": {"task": {"data": str(tmp_path / "DATA")}}}
    check_dictionary(state, checkpoint, data)
    with pytest.raises(BalkdError, match=r"OTHER/dict.txt is not the dictionary of the checkpoint .*ckpt/checkpoint.pt: first difference at symbol 6: 'gamma' in .*DATA/dict.txt, 'zeta' in .*OTHER/dict.txt"):
        check_dictionary(state, checkpoint, other)
    _dict_file(tmp_path / "DATA" / "dict.txt", ["alpha", "beta", "gamma", "eta"])  # since changed: hashes only
    with pytest.raises(BalkdError, match="recorded dictionary sha256"):
        check_dictionary(state, checkpoint, other)


def test_dictionary_check_without_record_uses_size_and_the_dict_beside_the_checkpoint(tmp_path):
    data = _dict_file(tmp_path / "DATA" / "dict.txt", SYMBOLS)
    longer = _dict_file(tmp_path / "LONG" / "dict.txt", SYMBOLS + ["epsilon"])
    renamed = _dict_file(tmp_path / "RENAMED" / "dict.txt", ["alpha", "beta", "gamma", "omega"])
    checkpoint = str(tmp_path / "ckpt" / "checkpoint.pt")
    check_dictionary(_state(ROWS), checkpoint, renamed)  # same size, nothing beside: cannot tell
    with pytest.raises(BalkdError, match=f"{longer} is not the dictionary of the checkpoint {checkpoint}: the checkpoint embeds 9 symbols, .* gives 10"):
        check_dictionary(_state(ROWS), checkpoint, longer)
    _dict_file(tmp_path / "ckpt" / "dict.txt", SYMBOLS)
    check_dictionary(_state(ROWS), checkpoint, data)
    with pytest.raises(BalkdError, match=r"RENAMED/dict.txt is not the dictionary of the checkpoint .*ckpt/checkpoint.pt: first difference at symbol 7: 'delta' in .*ckpt/dict.txt, 'omega' in .*RENAMED/dict.txt"):
        check_dictionary(_state(ROWS), checkpoint, renamed)


# ---------------------------------------------------------------- frozen encoder, in process
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return tiny_project(tmp_path_factory)


def _encoded_split(project, encoder, lang="aa", split="train", pooling="first"):
    sentences = read_tagged(os.path.join(project.probe_dir, "pos", lang, f"{split}.conllu"))
    labels = LabelSet.from_sentences(sentences)
    sp = load_processor(os.path.join(project.data, "spm.model"), "--data")
    enc = encode_split(sentences, sp, encoder.dictionary, encoder.max_positions)
    enc.features = encoder.word_features(enc.aligned, max_tokens=256, pooling=pooling)  # several padded batches
    return enc, labels


@pytest.mark.slow
@pytest.mark.parametrize("layer,pooling", [(1, "first"), (-1, "first"), (-1, "mean"), (1, "last")])
def test_features_are_the_encoders_states_at_each_words_subwords(project, layer, pooling):
    """Batched, padded feature extraction equals running the model on each sentence alone and pooling each
    word's subword states by hand."""
    encoder = FrozenEncoder.from_checkpoint(project.checkpoint, project.data, layer)
    enc, _ = _encoded_split(project, encoder, pooling=pooling)
    model = encoder.model
    several_pieces = 0
    for aligned, features in list(zip(enc.aligned, enc.features))[:20]:
        with torch.no_grad():
            last, extra = model.encoder.extract_features(aligned.tokens[None], return_all_hiddens=True)
        states = last[0] if encoder.layer == encoder.num_layers else extra["inner_states"][encoder.layer][:, 0]
        spans = list(zip(aligned.word_positions, aligned.word_ends))
        several_pieces += sum(end - start > 1 for start, end in spans)
        by_hand = {"first": lambda a, b: states[a], "last": lambda a, b: states[b - 1],
                   "mean": lambda a, b: states[a:b].mean(0)}[pooling]
        torch.testing.assert_close(features, torch.stack([by_hand(a, b) for a, b in spans]), atol=1e-5, rtol=1e-5)
    assert several_pieces > 0, "the check needs words of several subwords"


@pytest.mark.slow
@pytest.mark.parametrize("hidden_dim", [0, 8])
def test_probe_training_leaves_encoder_bit_identical(project, hidden_dim):
    encoder = FrozenEncoder.from_checkpoint(project.checkpoint, project.data)
    before = {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}
    enc, labels = _encoded_split(project, encoder)
    features, ids = enc.word_matrix(labels)
    cfg = ProbeTrainingConfig(hidden_dim=hidden_dim, epochs=3, lr=1e-2)
    head = train_probe(features, ids, len(labels), cfg)
    assert not {id(p) for p in encoder.model.parameters()} & {id(p) for p in head.parameters()}
    assert all(not p.requires_grad and p.grad is None for p in encoder.model.parameters())
    after = encoder.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # the features themselves are a pure function of the frozen encoder
    again, _ = _encoded_split(project, encoder)
    assert all(torch.equal(a, b) for a, b in zip(enc.features, again.features))


@pytest.mark.slow
def test_layer_out_of_range_names_the_layer_flag_and_range(project):
    with pytest.raises(BalkdError, match=r"--layer 7 is out of range: .* 0 \(embeddings\) \.\. 2; .*\(-3 \.\. -1\)"):
        FrozenEncoder.from_checkpoint(project.checkpoint, project.data, layer=7)


@pytest.mark.slow
def test_random_init_control_is_the_architecture_with_fresh_seeded_weights(project):
    trained = FrozenEncoder.from_checkpoint(project.checkpoint, project.data).model.state_dict()
    fresh = FrozenEncoder.from_checkpoint(project.checkpoint, project.data, random_init=5)
    params = dict(fresh.model.named_parameters())
    assert {k: v.shape for k, v in fresh.model.state_dict().items()} == {k: v.shape for k, v in trained.items()}
    # nothing trained survives: embeddings, attention, feed-forward and layer norms all start fresh
    assert not [k for k, v in params.items() if torch.equal(v, trained[k])]
    layer_norms = [v for k, v in params.items() if "layer_norm" in k and k.endswith(".weight")]
    assert layer_norms and all(torch.equal(v, torch.ones_like(v)) for v in layer_norms)
    again = FrozenEncoder.from_checkpoint(project.checkpoint, project.data, random_init=5).model.state_dict()
    other = FrozenEncoder.from_checkpoint(project.checkpoint, project.data, random_init=6).model.state_dict()
    state = fresh.model.state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert not torch.equal(state["encoder.sentence_encoder.embed_tokens.weight"],
                           other["encoder.sentence_encoder.embed_tokens.weight"])


# ---------------------------------------------------------------- balkd-probe
def _probe_argv(project, out, *extra):
    return [
        "--checkpoint", f"tiny={project.checkpoint}", "--data", project.data, "--languages", "aa,bb",
        "--probe-dir", project.probe_dir, "--output-dir", str(out), "--cpu", *extra,
    ]


@pytest.mark.slow
def test_balkd_probe_matrix_and_easy_task_accuracy(project, tmp_path, capsys):
    assert probe_cli.main(_probe_argv(project, tmp_path, "--epochs", "30", "--lr", "1e-2")) == 0
    assert "| pos | aa |" in capsys.readouterr().out
    with open(tmp_path / "tiny" / "probe.json", encoding="utf-8") as f:
        result = json.load(f)
    assert result["layer"] == result["num_layers"] == 2
    for task, metric in (("pos", "accuracy"), ("ner", "f1")):
        block = result["tasks"][task]
        assert block["metric"] == metric
        m = block["matrix"]
        assert sorted(m) == ["aa", "bb"] and all(sorted(row) == ["aa", "bb"] for row in m.values())
        assert block["in_language"] == {"aa": m["aa"]["aa"], "bb": m["bb"]["bb"]}
        assert block["zero_shot"] == {"aa": m["bb"]["aa"], "bb": m["aa"]["bb"]}
        # The synthetic tags follow from the words: the probes must learn them in-language.
        assert min(block["in_language"].values()) > 0.95, (task, block["in_language"])
    _check_items_reproduce_matrix(tmp_path / "tiny", result)
    assert len(result["data_sha256"]) == 64 and result["dictionary_sha256"] == dict_file_sha256(
        os.path.join(project.data, "dict.txt"))


def _check_items_reproduce_matrix(out, result):
    """probe_items.npz: one count per test sentence, and their sums give every matrix entry exactly."""
    items = read_items(str(out / "probe_items.npz"))
    fields = {"pos": ("correct", "total"), "ner": ("tp", "pred", "gold")}
    expected_keys = set()
    for task, block in result["tasks"].items():
        for train in block["languages"]:
            for test in block["languages"]:
                counts = group_items(items, f"{task}/{train}/{test}")
                assert sorted(counts) == sorted(fields[task])
                assert all(len(v) == block["sentences"][test]["test"] and v.dtype == np.int32 for v in counts.values())
                if task == "pos":
                    value = int(counts["correct"].sum()) / int(counts["total"].sum())
                else:
                    value = f1_from_counts(counts)
                assert value == block["matrix"][train][test], (task, train, test)
                expected_keys |= {f"{task}/{train}/{test}/{name}" for name in fields[task]}
    assert set(items) == expected_keys


def _read(out):
    return json.loads((out / "tiny" / "probe.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_balkd_probe_adds_a_task_to_earlier_results_and_refuses_other_settings(project, tmp_path, capsys):
    fast = ("--epochs", "2")
    assert probe_cli.main(_probe_argv(project, tmp_path, "--tasks", "pos", *fast)) == 0
    pos_only = _read(tmp_path)
    pos_items = read_items(str(tmp_path / "tiny" / "probe_items.npz"))
    assert probe_cli.main(_probe_argv(project, tmp_path, "--tasks", "ner", *fast)) == 0
    both = _read(tmp_path)
    assert list(both["tasks"]) == ["pos", "ner"] and both["tasks"]["pos"] == pos_only["tasks"]["pos"]
    assert both["data_sha256"] != pos_only["data_sha256"]
    items = read_items(str(tmp_path / "tiny" / "probe_items.npz"))
    assert all(np.array_equal(items[k], v) for k, v in pos_items.items())
    _check_items_reproduce_matrix(tmp_path / "tiny", both)

    before = {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()}
    capsys.readouterr()
    assert probe_cli.main(_probe_argv(project, tmp_path, "--tasks", "pos", "--lr", "0.01", *fast)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("balkd-fairseq: error: ") and "holds ner results of other settings" in err[-1]
    assert "training.lr: 0.005 there, 0.01 now" in err[-1]
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()} == before
    # the random-init control is another model: its results never merge with the trained weights' ones
    assert probe_cli.main(_probe_argv(project, tmp_path, "--tasks", "pos", "--random-init", "3", *fast)) == 2
    assert "holds results of another checkpoint (trained weights there, the untrained weights of --random-init 3 " \
        "now)" in capsys.readouterr().err.strip().splitlines()[-1]
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()} == before
    assert _read(tmp_path)["random_init"] is None
    # nor do probes trained on fewer sentences (--train-sentences)
    assert probe_cli.main(_probe_argv(project, tmp_path, "--tasks", "pos", "--train-sentences", "3", *fast)) == 2
    assert "train_sentences: None there, 3 now" in capsys.readouterr().err.strip().splitlines()[-1]
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()} == before
    # nor probes of other word features (--word-pooling)
    assert probe_cli.main(_probe_argv(project, tmp_path, "--tasks", "pos", "--word-pooling", "mean", *fast)) == 2
    assert "word_pooling: 'first' there, 'mean' now" in capsys.readouterr().err.strip().splitlines()[-1]
    assert {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()} == before


@pytest.mark.slow
def test_balkd_probe_word_pooling_is_recorded_and_changes_what_the_probe_reads(project, tmp_path):
    fast = ("--tasks", "pos", "--epochs", "2")
    assert probe_cli.main(_probe_argv(project, tmp_path / "first", *fast)) == 0
    assert probe_cli.main(_probe_argv(project, tmp_path / "mean", *fast, "--word-pooling", "mean")) == 0
    first, mean = _read(tmp_path / "first"), _read(tmp_path / "mean")
    assert first["word_pooling"] == "first" and mean["word_pooling"] == "mean"
    assert first["tasks"]["pos"]["data_sha256"] == mean["tasks"]["pos"]["data_sha256"], "the same probing data"
    assert first["tasks"]["pos"]["matrix"] != mean["tasks"]["pos"]["matrix"]


@pytest.mark.slow
def test_all_o_gold_test_file_scores_undefined_with_a_warning(project, tmp_path, capsys):
    probe_dir = tmp_path / "PROBE"
    shutil.copytree(project.probe_dir, probe_dir)
    test_file = probe_dir / "ner" / "bb" / "test.iob2"
    rows = test_file.read_text(encoding="utf-8").splitlines()
    test_file.write_text("\n".join(r.split("\t")[0] + "\tO" if r else r for r in rows) + "\n", encoding="utf-8")
    argv = ["--checkpoint", f"tiny={project.checkpoint}", "--data", project.data, "--languages", "aa,bb",
            "--probe-dir", str(probe_dir), "--tasks", "ner", "--output-dir", str(tmp_path), "--epochs", "3", "--cpu"]
    assert probe_cli.main(argv) == 0
    result = _read(tmp_path)["tasks"]["ner"]
    assert result["matrix"]["aa"]["bb"] is None and result["matrix"]["bb"]["bb"] is None
    assert result["in_language"]["bb"] is None and result["zero_shot"]["bb"] is None
    assert isinstance(result["matrix"]["aa"]["aa"], float)
    assert "null" in (tmp_path / "tiny" / "probe.json").read_text(encoding="utf-8")
    captured = capsys.readouterr()
    assert "| ner | bb | undefined | undefined |" in captured.out
    assert "WARNING" in captured.err and f"ner bb: the test file {test_file} has no gold entities" in captured.err


@pytest.mark.slow
def test_balkd_probe_missing_file_is_one_clear_error(project, tmp_path, capsys):
    argv = _probe_argv(project, tmp_path, "--ner-dir", str(tmp_path / "nowhere"))
    assert probe_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "train.iob2" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "tiny")


@pytest.mark.slow
@pytest.mark.parametrize("flag,value,message", [
    ("--random-init", "-1", "--random-init must be a seed in [0, 2^63), got -1"),
    ("--train-sentences", "0", "--train-sentences must be at least 1, got 0"),
])
def test_balkd_probe_bad_number_is_one_clear_error(project, tmp_path, capsys, flag, value, message):
    assert probe_cli.main(_probe_argv(project, tmp_path, flag, value)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"balkd-fairseq: error: {message}"]
    assert not os.path.exists(tmp_path / "tiny")


@pytest.mark.slow
def test_balkd_probe_train_sentences_trains_on_the_first_sentences_only(project, tmp_path, capsys):
    whole = read_tagged(os.path.join(project.probe_dir, "pos", "aa", "train.conllu"))
    assert probe_cli.main(_probe_argv(project, tmp_path, "--tasks", "pos", "--epochs", "2", "--train-sentences", "3")) == 0
    result = _read(tmp_path)
    assert result["train_sentences"] == 3 and result["epoch_size"] == "whole train split"
    test_sizes = {lang: len(read_tagged(os.path.join(project.probe_dir, "pos", lang, "test.conllu"))) for lang in ("aa", "bb")}
    for lang in ("aa", "bb"):
        counts = result["tasks"]["pos"]["sentences"][lang]
        dev_size = len(read_tagged(os.path.join(project.probe_dir, "pos", lang, "dev.conllu")))
        assert counts["train"] == 3, "the train split is cut"
        assert counts["dev"] == dev_size > 3 and counts["test"] == test_sizes[lang] > 3, "dev and test stay whole"
    # the cut keeps the first sentences (what a file holding only them gives), and remembers the whole split's words
    probe_dir = tmp_path / "FIRST3"
    shutil.copytree(project.probe_dir, probe_dir)
    for lang in ("aa", "bb"):
        path = probe_dir / "pos" / lang / "train.conllu"
        blocks = path.read_text(encoding="utf-8").strip("\n").split("\n\n")
        path.write_text("\n\n".join(blocks[:3]) + "\n\n", encoding="utf-8")
    assert len(read_tagged(str(probe_dir / "pos" / "aa" / "train.conllu"))) == 3 < len(whole)
    cut = read_task(ProbingTaskData("pos", os.path.join(project.probe_dir, "pos")), ["aa", "bb"], 3)
    first3 = read_task(ProbingTaskData("pos", str(probe_dir / "pos")), ["aa", "bb"])
    for lang in ("aa", "bb"):
        assert cut[lang].splits == first3[lang].splits
        whole_words = sum(len(s.words) for s in read_tagged(os.path.join(project.probe_dir, "pos", lang, "train.conllu")))
        assert cut[lang].whole_train_words == whole_words > first3[lang].whole_train_words
    capsys.readouterr()  # more sentences than a split has: all of them, and a warning naming the file
    assert probe_cli.main(_probe_argv(project, tmp_path / "many", "--tasks", "pos", "--epochs", "2",
                                      "--train-sentences", str(len(whole) + 1))) == 0
    assert f"{os.path.join(project.probe_dir, 'pos', 'aa', 'train.conllu')}: {len(whole)} sentences, fewer than " \
           f"--train-sentences {len(whole) + 1}" in capsys.readouterr().err


def test_a_few_shot_probe_gets_the_updates_of_a_probe_on_the_whole_split(monkeypatch):
    """An epoch of words_per_epoch words: reshuffled whole passes over the few training words, so a probe on
    30 sentences is not left with a handful of updates (an under-trained NER probe tags everything O)."""
    generator = torch.Generator().manual_seed(0)
    assert sorted(epoch_order(7, 0, generator).tolist()) == list(range(7))  # one pass, as before
    order = epoch_order(7, 30, generator).tolist()
    assert len(order) == 30 and all(sorted(order[i:i + 7]) == list(range(7)) for i in range(0, 28, 7))
    steps = []
    original = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1) or original(self, *a, **k))
    features, labels = torch.randn(12, 4), torch.tensor([0, 1] * 6)
    train_probe(features, labels, 2, ProbeTrainingConfig(epochs=3, batch_size=8))
    assert len(steps) == 3 * 2  # 12 words: 2 batches an epoch
    steps.clear()
    train_probe(features, labels, 2, ProbeTrainingConfig(epochs=3, batch_size=8, words_per_epoch=100))
    assert len(steps) == 3 * 13  # 100 words: 13 batches an epoch


@pytest.mark.slow
def test_balkd_probe_probes_every_checkpoint_given(project, tmp_path, capsys):
    """--checkpoint repeated: one OUT/NAME per model (argparse used to keep the last one, silently)."""
    argv = _probe_argv(project, tmp_path, "--checkpoint", f"again={project.checkpoint}", "--tasks", "pos", "--epochs", "1")
    assert probe_cli.main(argv) == 0
    first, again = _read(tmp_path), json.loads((tmp_path / "again" / "probe.json").read_text(encoding="utf-8"))
    assert (first["name"], again["name"]) == ("tiny", "again")
    assert first["tasks"]["pos"]["matrix"] == again["tasks"]["pos"]["matrix"], "the same weights, data and seed"
    out = capsys.readouterr().out
    assert "| tiny | pos | aa |" in out and "| again | pos | aa |" in out


def test_a_later_checkpoints_refusal_comes_before_any_probe_is_trained(project, tmp_path, capsys, monkeypatch):
    # with several --checkpoint, a refusal for the second must not throw away hours of probing the first
    from balkd_fairseq.files import file_sha256

    (tmp_path / "again").mkdir()
    earlier = {"kind": "probing", "checkpoint": os.path.abspath(project.checkpoint), "random_init": None,
               "checkpoint_sha256": file_sha256(project.checkpoint), "layer": 1, "tasks": {"ner": {}}}
    (tmp_path / "again" / "probe.json").write_text(json.dumps(earlier), encoding="utf-8")
    trained = []
    monkeypatch.setattr(probe_cli, "_run_tasks", lambda name, *rest: trained.append(name))
    argv = _probe_argv(project, tmp_path, "--checkpoint", f"again={project.checkpoint}", "--tasks", "pos")
    assert probe_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "again/probe.json holds ner results of other settings" in err and "layer: 1 there" in err, err
    assert trained == [] and not (tmp_path / "tiny").exists()


# ---------------------------------------------------------------- what balkd-probe warns about
def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.slow
def test_split_warnings_name_the_task_and_what_becomes_of_cut_words(project, caplog):
    encoder = FrozenEncoder.from_checkpoint(project.checkpoint, project.data)
    encoder.max_positions = 6  # <s>, four subwords, </s>: the long sentence below loses words
    sp = load_processor(os.path.join(project.data, "spm.model"), "--data")
    long = TaggedSentence(["ta", "miru", "dasa", "ko", "sabo", "lenta", "ni", "gorim"], ["O"] * 8)
    foreign = TaggedSentence(["ЖЖЖ", "ЩЩЩ"], ["O", "O"])  # characters the vocabulary lacks
    data = {"aa": LanguageData(splits={split: [long, foreign] for split in ("train", "dev", "test")})}
    with caplog.at_level("WARNING"):
        encoded = encode_task(data, encoder, sp, task_name="ner")
    cut = sum(pos < 0 for pos in encoded["aa"]["train"].aligned[0].word_positions)
    assert cut > 0
    warnings = _warnings(caplog)
    assert f"ner aa train: {cut} words beyond the encoder's length limit are left out of the probe's training" in warnings
    assert f"ner aa dev: {cut} words beyond the encoder's length limit count as errors in the dev score that picks " \
           "the probe's epoch" in warnings
    assert f"ner aa test: {cut} words beyond the encoder's length limit count as errors" in warnings
    unknown = [w for w in warnings if "<unk>" in w]
    assert [w.split(":")[0] for w in unknown] == ["ner aa train", "ner aa dev", "ner aa test"]
    assert all("characters the vocabulary lacks, or an --spm-model other than" in w for w in unknown)


def _encoded(tag_rows):
    """An encoded split of made-up words with random features, one sentence per row of tags."""
    sentences = [TaggedSentence([f"w{i}" for i in range(len(tags))], tags) for tags in tag_rows]
    aligned = [AlignedSentence(torch.zeros(len(tags) + 2, dtype=torch.long), list(range(1, len(tags) + 1)),
                               list(range(2, len(tags) + 2))) for tags in tag_rows]
    return EncodedSplit(sentences, aligned, [torch.randn(len(tags), 4) for tags in tag_rows])


def test_test_labels_the_probe_never_saw_are_named_once_per_probe(tmp_path, caplog):
    encoded = {
        "aa": {"train": _encoded([["NOUN", "VERB"]]), "test": _encoded([["NOUN", "X"], ["X", "VERB"]])},
        "bb": {"train": _encoded([["NOUN", "X"]]), "test": _encoded([["VERB", "Y"]])},
    }
    with caplog.at_level("WARNING"):
        run_task(ProbingTaskData("pos", str(tmp_path)), encoded, ProbeTrainingConfig(epochs=1))
    assert _warnings(caplog) == [
        "pos aa: label(s) X, Y never occur in the probe's training sentences, so the test words carrying them count "
        "as errors (aa: 2, bb: 1)",
        "pos bb: label(s) VERB, Y never occur in the probe's training sentences, so the test words carrying them "
        "count as errors (aa: 1, bb: 2)",
    ]


def test_a_ner_probe_trained_without_entities_is_warned_about(tmp_path, caplog):
    encoded = {
        "aa": {"train": _encoded([["O", "O"], ["O"]]), "test": _encoded([["B-PER", "O"]])},
        "bb": {"train": _encoded([["B-PER", "O"]]), "test": _encoded([["O", "B-PER"]])},
    }
    with caplog.at_level("WARNING"):
        block, _ = run_task(ProbingTaskData("ner", str(tmp_path)), encoded, ProbeTrainingConfig(epochs=1))
    assert block["matrix"]["aa"] == {"aa": 0.0, "bb": 0.0}
    assert [w for w in _warnings(caplog) if "no entities" in w] == [
        f"ner aa: the probe's training sentences from {tmp_path / 'aa' / 'train.iob2'} have no entities (every tag "
        "is O), so it can only predict O: F1 0 on every test file with entities"
    ]


def test_a_missing_dev_file_is_warned_about_naming_a_likely_one(tmp_path, caplog):
    sentence = "1\tta\t_\tDET\t_\t_\t_\t_\t_\t_\n\n"
    for lang, splits in {"aa": ("train", "valid", "test"), "bb": ("train", "test"), "cc": ("train", "dev", "test")}.items():
        (tmp_path / lang).mkdir()
        for split in splits:
            (tmp_path / lang / f"{split}.conllu").write_text(sentence, encoding="utf-8")
    with caplog.at_level("WARNING"):
        data = read_task(ProbingTaskData("pos", str(tmp_path)), ["aa", "bb", "cc"])
    assert [sorted(data[lang].splits) for lang in ("aa", "bb", "cc")] == [["test", "train"], ["test", "train"],
                                                                           ["dev", "test", "train"]]
    no_dev = "no dev file {}, so the probe keeps its last epoch instead of the one with the best dev score"
    assert _warnings(caplog) == [
        f"pos aa: {no_dev.format(tmp_path / 'aa' / 'dev.conllu')}; is {tmp_path / 'aa' / 'valid.conllu'} the dev "
        "split? Name it dev.conllu",
        f"pos bb: {no_dev.format(tmp_path / 'bb' / 'dev.conllu')}",
    ]
