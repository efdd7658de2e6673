import shutil
from collections import Counter

import pytest
import torch
from helpers import make_tiny_data

from balkd_fairseq.data.balancing import draw_epoch
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.tasks.balanced_distill import BalancedDistillConfig, BalancedDistillTask


def make_task(data, **overrides):
    cfg = BalancedDistillConfig(data=str(data), **{"tokens_per_sample": 32, "seed": 1, **overrides})
    return BalancedDistillTask.setup_task(cfg)


def epoch_samples(task, split, epoch, batch_size=4):
    """(lang_id, unmasked token tuple) of every sample, in the order fairseq's iterator yields them.

    The split is loaded once, as fairseq-train loads the training subset: later epochs come from
    the same dataset through fairseq's epoch iterator (``set_epoch``), not from a reload.
    """
    if split not in task.datasets:
        task.load_dataset(split, epoch=epoch)
    itr = task.get_batch_iterator(task.dataset(split), max_sentences=batch_size, seed=1,
                                  epoch=epoch).next_epoch_itr(shuffle=True)
    pad = task.source_dictionary.pad()
    out = []
    for batch in itr:
        original = torch.where(batch["target"].ne(pad), batch["target"], batch["net_input"]["src_tokens"])
        for lang_id, row in zip(batch["lang_id"].tolist(), original):
            out.append((lang_id, tuple(row[row.ne(pad)].tolist())))
    return out


def expected_samples(task, epoch):
    sizes = [len(task.language_blocks("train", lang)) for lang in task.languages]
    draws = draw_epoch(sizes, "subsample", seed=1, epoch=epoch)
    return Counter(
        (lang_id, tuple(task.language_blocks("train", lang)[int(i)].tolist()))
        for lang_id, (lang, idx) in enumerate(zip(task.languages, draws)) for i in idx
    )


def test_languages_default_to_sorted_subdirectories(tiny_data):
    assert make_task(tiny_data).languages == ["aa", "bb"]
    assert make_task(tiny_data, languages="bb").languages == ["bb"]


def test_subsample_is_balanced_and_fixed_by_default(tiny_data):
    task = make_task(tiny_data, balance="subsample")
    first, second = epoch_samples(task, "train", 1), epoch_samples(task, "train", 2)
    smallest = len(task.language_blocks("train", "bb"))
    assert Counter(lang for lang, _ in first) == {0: smallest, 1: smallest}
    # the paper's sub-sampling: one draw for the whole run, the rest of aa is never seen
    assert Counter(first) == Counter(second) == expected_samples(task, 1)
    assert len({s for s in first if s[0] == 0}) < len(task.language_blocks("train", "aa"))
    assert first != second  # ... but every epoch is shuffled afresh


def test_subsample_per_epoch_is_balanced_and_redrawn(tiny_data):
    task = make_task(tiny_data, balance="subsample", balance_draw="per_epoch")
    first, second = epoch_samples(task, "train", 1), epoch_samples(task, "train", 2)
    per_lang = Counter(lang for lang, _ in first)
    smallest = len(task.language_blocks("train", "bb"))
    assert per_lang == {0: smallest, 1: smallest}
    # what the iterator yields in each epoch is exactly that epoch's draw, not a stale order
    assert Counter(first) == expected_samples(task, 1)
    assert Counter(second) == expected_samples(task, 2)
    assert Counter(s for s in first if s[0] == 0) != Counter(s for s in second if s[0] == 0)
    task.load_dataset("valid")
    assert not task.dataset("train").can_reuse_epoch_itr_across_epochs  # fairseq re-batches it every epoch
    assert task.dataset("valid").can_reuse_epoch_itr_across_epochs
    assert not task.has_sharded_data("train")  # no "sharded" trick: fairseq_cli asks this for the literal "train"


def test_none_uses_all_data(tiny_data):
    task = make_task(tiny_data, balance="none")
    samples = epoch_samples(task, "train", 1)
    sizes = {i: len(task.language_blocks("train", lang)) for i, lang in enumerate(task.languages)}
    assert Counter(lang for lang, _ in samples) == sizes
    assert task.dataset("train").can_reuse_epoch_itr_across_epochs


def test_per_language_valid_split(tiny_data):
    task = make_task(tiny_data)
    samples = epoch_samples(task, "valid_bb", 1)
    assert samples and {lang for lang, _ in samples} == {1}
    assert {lang for lang, _ in epoch_samples(task, "valid", 1)} == {0, 1}


def test_masking_is_a_pure_function_of_seed_epoch_index(tiny_data):
    a, b = make_task(tiny_data), make_task(tiny_data)
    a.load_dataset("train", epoch=3)
    b.load_dataset("train", epoch=3)
    for i in range(0, len(a.dataset("train")), 7):
        x, y = a.dataset("train")[i], b.dataset("train")[i]
        assert torch.equal(x["net_input.src_tokens"], y["net_input.src_tokens"])
        assert torch.equal(x["target"], y["target"])


def test_batch_by_language_gives_homogeneous_batches(tiny_data):
    task = make_task(tiny_data, balance="none", batch_by_language=True)
    task.load_dataset("train", epoch=1)
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=5, seed=1, epoch=1).next_epoch_itr(shuffle=True)
    langs_per_batch = [set(batch["lang_id"].tolist()) for batch in itr]
    assert all(len(s) == 1 for s in langs_per_batch)
    assert {next(iter(s)) for s in langs_per_batch} == {0, 1}


def batch_languages(task, epoch):
    itr = task.get_batch_iterator(task.dataset("train"), max_sentences=5, seed=1, epoch=epoch)
    return [int(batch["lang_id"][0]) for batch in itr.next_epoch_itr(shuffle=True)], itr


def test_language_run_batches_order_steps_in_runs_of_one_language(tiny_data):
    task = make_task(tiny_data, balance="none", batch_by_language=True, language_run_batches=4)
    task.load_dataset("train", epoch=1)
    order, itr = batch_languages(task, 1)
    runs = [sum(1 for _ in group) for _, group in __import__("itertools").groupby(order)]
    # whole runs of 4 (adjacent runs may share a language); a language's last run may be shorter
    assert sum(1 for length in runs if length % 4) <= len(task.languages), runs
    plain = make_task(tiny_data, balance="none", batch_by_language=True)
    plain.load_dataset("train", epoch=1)
    plain_order = batch_languages(plain, 1)[0]
    assert sorted(order) == sorted(plain_order), "the same batches, in runs"
    switches = [sum(a != b for a, b in zip(o, o[1:])) for o in (order, plain_order)]
    assert switches[0] < switches[1], switches
    with pytest.raises(BalkdError, match="--language-run-batches needs --batch-by-language"):
        make_task(tiny_data, language_run_batches=3)


def test_missing_split_names_language_and_file(tiny_data, tmp_path):
    data = make_tiny_data(tmp_path / "d", {"aa": 20, "bb": 20})
    (data / "bb" / "valid.bin").unlink()
    task = make_task(data)
    with pytest.raises(BalkdError, match=r"language 'bb' has no valid split: .*bb/valid"):
        task.load_dataset("valid")


def test_empty_language_is_an_error(tmp_path):
    data = make_tiny_data(tmp_path / "d", {"aa": 20, "bb": 0})
    with pytest.raises(BalkdError, match=r"language 'bb' has an empty train split"):
        make_task(data).load_dataset("train")


def test_unknown_language_and_missing_dictionary(tiny_data, tmp_path):
    with pytest.raises(BalkdError, match="'zz'"):
        make_task(tiny_data, languages="aa,zz")
    shutil.copytree(tiny_data, tmp_path / "nodict")
    (tmp_path / "nodict" / "dict.txt").unlink()
    with pytest.raises(BalkdError, match="dict.txt"):
        make_task(tmp_path / "nodict")


# ----------------------------------------------------------------------------- --train-subset
def copy_with_train_subset(data, root, name):
    """DATA with every language's train split renamed to ``name``."""
    shutil.copytree(data, root)
    for lang_dir in root.iterdir():
        if lang_dir.is_dir():
            for ext in ("bin", "idx"):
                (lang_dir / f"train.{ext}").rename(lang_dir / f"{name}.{ext}")
    return root


@pytest.mark.parametrize("draw", ["fixed", "per_epoch"])
def test_train_subset_other_is_balanced_exactly_as_train(tiny_data, tmp_path, draw):
    other = copy_with_train_subset(tiny_data, tmp_path / "other", "other")
    as_train = make_task(tiny_data, balance_draw=draw)
    as_other = make_task(other, balance_draw=draw, train_subset="other")
    assert as_other.train_subset_name == "other" and as_train.train_subset_name == "train"
    smallest = len(as_train.language_blocks("train", "bb"))
    for epoch in (1, 2):
        samples = epoch_samples(as_other, "other", epoch)
        assert Counter(lang for lang, _ in samples) == {0: smallest, 1: smallest}
        assert samples == epoch_samples(as_train, "train", epoch)
    assert Counter(epoch_samples(as_other, "other", 1)) == expected_samples(as_train, 1)


def test_subset_other_than_train_subset_is_not_balanced(tiny_data):
    task = make_task(tiny_data, train_subset="valid")
    assert Counter(lang for lang, _ in epoch_samples(task, "train", 1)) == {
        i: len(task.language_blocks("train", lang)) for i, lang in enumerate(task.languages)}


# ----------------------------------------------------------------------------- languages
def test_language_lists_are_stripped_hidden_directories_ignored(tiny_data, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    (data / ".ipynb_checkpoints").mkdir()
    (data / ".git").mkdir()
    assert make_task(data).languages == ["aa", "bb"]
    assert make_task(data, languages=" bb , aa ").languages == ["bb", "aa"]


@pytest.mark.parametrize("languages,match", [
    ("aa,bb,aa", "lists language 'aa' twice"),
    ("aa,b_b", "contains '_'"),
    ("aa,.git", "starting with '.'"),
])
def test_bad_language_lists_are_refused(tiny_data, languages, match):
    with pytest.raises(BalkdError, match=match):
        make_task(tiny_data, languages=languages)


def test_discovered_language_with_separator_is_refused(tiny_data, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    (data / "zh_Hans").mkdir()
    with pytest.raises(BalkdError, match="'zh_Hans' contains '_'"):
        make_task(data)


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize("overrides,match", [
    ({"sampling_alpha": float("nan")}, "--sampling-alpha must be a finite number"),
    ({"sampling_alpha": -0.5}, "--sampling-alpha must be >= 0"),
    ({"samples_per_language": -4}, "--samples-per-language must be >= 0"),
    ({"samples_per_language": 5, "balance": "none"}, "--samples-per-language needs a balancing mode"),
    ({"mask_prob": 1.0}, r"--mask-prob must be in \(0, 1\)"),
    ({"tokens_per_sample": 1}, "--tokens-per-sample must be >= 2"),
    ({"leave_unmasked_prob": 0.6, "random_token_prob": 0.6}, "must be <= 1"),
    ({"d2v2_multi": True}, "--d2v2-multi"),
])
def test_bad_settings_are_refused_at_setup(tiny_data, overrides, match):
    with pytest.raises(BalkdError, match=match):
        make_task(tiny_data, **overrides)


def test_round_robin_data_directories_are_refused(tiny_data):
    with pytest.raises(BalkdError, match="round-robin"):
        make_task(f"{tiny_data}:{tiny_data}")


@pytest.mark.parametrize("include_index,include_target_tokens", [(True, False), (False, True)])
def test_inherited_net_input_flags_are_honoured(tiny_data, include_index, include_target_tokens):
    task = make_task(tiny_data, include_index=include_index, include_target_tokens=include_target_tokens)
    task.load_dataset("valid")
    batch = task.dataset("valid").collater([task.dataset("valid")[i] for i in range(3)])
    assert ("src_id" in batch["net_input"]) == include_index
    assert ("target_tokens" in batch["net_input"]) == include_target_tokens
    if include_index:
        assert torch.equal(batch["net_input"]["src_id"], batch["id"])


# ----------------------------------------------------------------------------- inference without data
def test_built_for_inference_needs_only_the_dictionary(tiny_data, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(tiny_data / "dict.txt", model_dir / "dict.txt")
    cfg = BalancedDistillConfig(data=str(model_dir), tokens_per_sample=32, seed=1, languages="bb,aa")
    task = BalancedDistillTask.setup_task(cfg, from_checkpoint=True)
    assert task.languages == ["bb", "aa"]
    unknown = BalancedDistillTask.setup_task(BalancedDistillConfig(data=str(model_dir), seed=1), from_checkpoint=True)
    assert unknown.languages == []
    with pytest.raises(BalkdError, match="no languages"):
        unknown.load_dataset("valid")  # data is looked for only when a split is loaded


def test_task_records_languages_and_dictionary_hash(tiny_data):
    from balkd_fairseq.data.dictionary_hash import DICTIONARY_HASH_KEY, dict_file_sha256

    task = make_task(tiny_data, languages=" bb ,aa")
    assert task.cfg.languages == "bb,aa"
    assert task.state_dict()[DICTIONARY_HASH_KEY] == dict_file_sha256(str(tiny_data / "dict.txt"))


# ----------------------------------------------------------------------------- the teacher cache's interface
def test_sample_address_finds_the_sample_in_its_language_dataset(tiny_data):
    task = make_task(tiny_data, balance_draw="per_epoch")
    task.load_dataset("train", epoch=1)
    for epoch in (1, 2):
        itr = task.get_batch_iterator(task.dataset("train"), max_sentences=5, seed=1, epoch=epoch).next_epoch_itr()
        batch = next(iter(itr))
        address = task.sample_address(batch)
        assert (address.split, address.epoch) == ("train", epoch)
        parts = dict(task.language_datasets("train", epoch))
        pad = task.source_dictionary.pad()
        for row, (lang_id, sample_id) in enumerate(zip(address.lang_ids.tolist(), address.sample_ids.tolist())):
            item = parts[lang_id][sample_id]
            tokens = batch["net_input"]["src_tokens"][row]
            assert torch.equal(tokens[tokens.ne(pad)], item["net_input.src_tokens"])
            assert torch.equal(batch["target"][row][: len(item["target"])], item["target"])


def test_data_fingerprint_sections(tiny_data, tmp_path):
    task = make_task(tiny_data)
    fingerprint = task.data_fingerprint({"train": [1], "valid": [1]})
    assert set(fingerprint) == {"languages", "data", "masking", "balancing", "seed"}
    assert set(fingerprint["data"]["files"]) == {"aa/train", "aa/valid", "bb/train", "bb/valid"}
    assert fingerprint["languages"] == ["aa", "bb"] and fingerprint["seed"] == 1
    assert fingerprint["balancing"]["balance"] == "subsample" and fingerprint["masking"]["tokens_per_sample"] == 32
    other = tmp_path / "d"
    shutil.copytree(tiny_data, other)
    (other / "bb" / "valid.bin").write_bytes((other / "bb" / "valid.bin").read_bytes()[::-1])
    changed = make_task(other).data_fingerprint({"train": [1], "valid": [1]})
    assert changed["data"]["files"]["bb/valid"] != fingerprint["data"]["files"]["bb/valid"]
    assert changed["data"]["files"]["aa/train"] == fingerprint["data"]["files"]["aa/train"]


def test_a_line_longer_than_a_block_is_refused_at_load_unless_shortened(tiny_data):
    task = make_task(tiny_data, sample_break_mode="complete", tokens_per_sample=8)
    with pytest.raises(BalkdError, match=r"language 'aa': .*train.bin holds a line of \d+ tokens .* --tokens-per-sample 8"):
        task.load_dataset("train")
    blocks = make_task(tiny_data, sample_break_mode="none", tokens_per_sample=8)
    blocks.load_dataset("train")
    assert max(blocks.dataset("train").sizes) <= 8


def test_a_dictionary_with_a_duplicate_symbol_is_one_line(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data, tmp_path / "data")
    first = (data / "dict.txt").read_text(encoding="utf-8").splitlines()[0]
    (data / "dict.txt").write_text((data / "dict.txt").read_text(encoding="utf-8") + first + "\n", encoding="utf-8")
    with pytest.raises(BalkdError, match="DATA/dict.txt: .*dict.txt is not a fairseq dict.txt"):
        make_task(data)


def test_teachers_given_to_a_hard_label_criterion_are_reported(tiny_data, caplog):
    from fairseq.criterions.masked_lm import MaskedLmConfig

    task = make_task(tiny_data, teachers="aa:/x/aa.pt,bb:/x/bb.pt")
    with caplog.at_level("WARNING"):
        task.build_criterion(MaskedLmConfig(_name="masked_lm"))
    assert "--teachers/--teacher-cache are ignored: --criterion masked_lm" in caplog.text


def mask_views(task, split):
    """Every language's (input, target) MaskTokensDataset views of a loaded split."""
    return [(part.defn["net_input.src_tokens"].dataset, part.defn["target"].dataset)
            for _, part in task.language_datasets(split, 1)]


@pytest.mark.parametrize("freq_weighted", [False, True])
def test_mask_views_share_one_replacement_distribution_and_mask_as_stock_fairseq(tiny_data, freq_weighted):
    from fairseq.data import MaskTokensDataset

    task = make_task(tiny_data, freq_weighted_replacement=freq_weighted, random_token_prob=0.5, leave_unmasked_prob=0.2)
    for split in ("train", "valid"):  # one array per split, not one per view
        views = [view for pair in mask_views(task, split) for view in pair]
        assert len(views) == 2 * len(task.languages)
        assert all(view.weights is views[0].weights for view in views)
    # loading a split must not change the dictionary's counts (fairseq's MaskedLMTask adds <mask> again
    # on every load), or --freq-weighted-replacement masks would depend on what was loaded before
    assert mask_views(task, "train")[0][0].weights is mask_views(task, "valid")[0][0].weights
    for lang_id, (src, tgt) in enumerate(mask_views(task, "valid")):
        # stock fairseq views over the same blocks compute their own weights: the masks must be the same
        settings = dict(vocab=task.source_dictionary, pad_idx=task.source_dictionary.pad(), mask_idx=task.mask_idx,
                        seed=task.cfg.seed + lang_id, mask_prob=task.cfg.mask_prob,
                        leave_unmasked_prob=0.2, random_token_prob=0.5, freq_weighted_replacement=freq_weighted)
        stock_src = MaskTokensDataset(src.dataset, return_masked_tokens=False, **settings)
        stock_tgt = MaskTokensDataset(src.dataset, return_masked_tokens=True, **settings)
        assert stock_src.weights is not src.weights
        for view in (src, tgt, stock_src, stock_tgt):
            view.set_epoch(2)
        for i in range(len(src)):
            assert torch.equal(src[i], stock_src[i]) and torch.equal(tgt[i], stock_tgt[i])


def sentencepiece_data(root, symbols, words):
    """DATA with a SentencePiece-like dictionary: sentences of whole words, each a run of pieces."""
    import random

    from fairseq.data import Dictionary
    from helpers import write_split

    dictionary = Dictionary()
    for symbol in symbols:
        dictionary.add_symbol(symbol)
    dictionary.finalize()
    root.mkdir()
    dictionary.save(str(root / "dict.txt"))
    rng = random.Random(0)
    for lang in ("aa", "bb"):
        (root / lang).mkdir()
        for split in ("train", "valid"):
            write_split(dictionary, [[p for _ in range(6) for p in rng.choice(words)] for _ in range(30)],
                        str(root / lang / split))
    return root


def test_mask_whole_words_masks_all_pieces_of_a_word_or_none(tmp_path):
    words = [["▁ab", "cd", "ef"], ["▁gh", "ij"], ["▁k"]]
    data = sentencepiece_data(tmp_path / "data", ["▁ab", "cd", "ef", "▁gh", "ij", "▁k"], words)
    task = make_task(data, mask_whole_words=True, mask_prob=0.3, tokens_per_sample=64)
    task.load_dataset("train")
    d, pad = task.source_dictionary, task.source_dictionary.pad()
    checked = partly = 0
    for i in range(len(task.dataset("train"))):
        item = task.dataset("train")[i]
        original = torch.where(item["target"].ne(pad), item["target"], item["net_input.src_tokens"])
        masked = item["target"].ne(pad).tolist()
        symbols = [d[t] for t in original.tolist()]
        starts = [k for k, s in enumerate(symbols) if s.startswith("▁")] + [len(symbols)]
        for begin, end in zip(starts, starts[1:]):
            span = [k for k in range(begin, end) if symbols[k] not in ("</s>", "<s>")]
            checked += len(span) > 1
            partly += len({masked[k] for k in span}) > 1
    assert checked > 100 and partly == 0, f"{partly} of {checked} multi-piece words were masked in part"


def test_mask_whole_words_needs_a_sentencepiece_vocabulary(tiny_data):
    task = make_task(tiny_data, mask_whole_words=True)
    with pytest.raises(BalkdError, match="--mask-whole-words: no symbol of .*dict.txt starts with '▁'"):
        task.load_dataset("train")


def test_validation_scores_every_block_whatever_the_batch_size_multiple(tiny_data):
    task = make_task(tiny_data)
    task.load_dataset("valid")
    valid = task.dataset("valid")
    batches = task.get_batch_iterator(valid, max_sentences=4, required_batch_size_multiple=8, seed=1).frozen_batches
    assert sorted(i for batch in batches for i in batch) == list(range(len(valid))) and len(valid) % 8
    task.load_dataset("train")
    train = task.get_batch_iterator(task.dataset("train"), max_sentences=8, required_batch_size_multiple=8, seed=1)
    assert all(len(batch) % 8 == 0 for batch in train.frozen_batches), "training batches keep fairseq's multiple"


def test_split_messages_name_the_flag_and_the_fix(tiny_data):
    task = make_task(tiny_data)
    with pytest.raises(BalkdError, match="split name 'aa' is a language: .*e.g. valid_aa"):
        task.load_dataset("aa")
    task.load_dataset("valid")
    with pytest.raises(BalkdError, match=r"--max-tokens-valid \(default: --max-tokens\) 8 is smaller than the 'valid'"):
        task.get_batch_iterator(task.dataset("valid"), max_tokens=8, seed=1)


def test_language_runs_that_update_freq_does_not_divide_are_warned_about(caplog):
    from omegaconf import OmegaConf

    from balkd_fairseq.tasks.run_checks import warn_runs_across_steps

    task_cfg = OmegaConf.create({"language_run_batches": 3})
    with caplog.at_level("WARNING"):
        warn_runs_across_steps(task_cfg, OmegaConf.create({"optimization": {"update_freq": [2]}}))
        warn_runs_across_steps(task_cfg, OmegaConf.create({"optimization": {"update_freq": [3]}}))
    warnings = [r.getMessage() for r in caplog.records if "--language-run-batches" in r.getMessage()]
    assert len(warnings) == 1 and "not a multiple of --update-freq 2" in warnings[0]


def test_the_start_weights_are_checked_in_training_runs_only(tiny_data, tmp_path, monkeypatch):
    # eval-lm and balkd-cache-teachers take a training command line (a --save-dir, by default ./checkpoints,
    # that may hold anything): only fairseq-train starts from its weights
    from omegaconf import OmegaConf

    from balkd_fairseq.checkpoints import EMBED_KEY
    from balkd_fairseq.tasks import balanced_distill

    save = tmp_path / "checkpoints"
    save.mkdir()
    torch.save({"model": {EMBED_KEY: torch.zeros(5, 4)}}, save / "checkpoint_last.pt")  # another vocabulary
    root = OmegaConf.create({"task": OmegaConf.structured(BalancedDistillConfig(data=str(tiny_data), tokens_per_sample=32)),
                             "checkpoint": {"save_dir": str(save), "restore_file": "checkpoint_last.pt"}})
    BalancedDistillTask.setup_task(root.task)  # not a training run: nothing to check
    monkeypatch.setattr(balanced_distill, "fairseq_run_config", lambda: object())
    monkeypatch.setattr(balanced_distill, "start_task_run", lambda: None)
    with pytest.raises(BalkdError, match=r"cannot start from .*checkpoint_last.pt \(--save-dir\): .*embeds 5 symbols"):
        BalancedDistillTask.setup_task(root.task)


def test_an_fsdp_rank_checks_its_own_shard_of_the_start_weights(tiny_data, tmp_path, monkeypatch):
    # with --use-sharded-state fairseq's trainer loads checkpoint_last-shard<rank>.pt: that is what is checked
    from omegaconf import OmegaConf

    from balkd_fairseq.checkpoints import EMBED_KEY
    from balkd_fairseq.data.resume_settings import loaded_checkpoint, shard_suffix
    from balkd_fairseq.tasks import balanced_distill

    save = tmp_path / "checkpoints"
    save.mkdir()
    torch.save({"model": {EMBED_KEY: torch.zeros(5, 4)}}, save / "checkpoint_last-shard1.pt")
    sharded = {"ddp_backend": "fully_sharded", "use_sharded_state": True, "distributed_rank": 1}
    assert shard_suffix(OmegaConf.create(sharded)) == "-shard1"
    assert shard_suffix(OmegaConf.create({**sharded, "use_sharded_state": False})) == ""
    assert shard_suffix(OmegaConf.create({**sharded, "ddp_backend": "c10d"})) == ""
    root = OmegaConf.create({"task": OmegaConf.structured(BalancedDistillConfig(data=str(tiny_data), tokens_per_sample=32)),
                             "checkpoint": {"save_dir": str(save), "restore_file": "checkpoint_last.pt"},
                             "distributed_training": sharded})
    assert loaded_checkpoint(root.checkpoint) is None  # the unsharded name is not there
    monkeypatch.setattr(balanced_distill, "fairseq_run_config", lambda: object())
    monkeypatch.setattr(balanced_distill, "start_task_run", lambda: None)
    with pytest.raises(BalkdError, match=r"cannot start from .*checkpoint_last-shard1.pt \(--save-dir\): .*embeds 5"):
        BalancedDistillTask.setup_task(root.task)
