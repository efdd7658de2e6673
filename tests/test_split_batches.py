"""A split that fairseq's batching turns into no batch is refused by name (issue 14), checked against fairseq's own
batch_by_size rather than a copy of its rule."""
import numpy as np
import pytest
from fairseq.data import data_utils

from balkd_fairseq.data.split_batches import check_split_has_batches
from balkd_fairseq.errors import BalkdError


def fairseq_batches(blocks: int, block_len: int, max_tokens=None, max_sentences=None, multiple=1):
    return data_utils.batch_by_size(np.arange(blocks), lambda i: block_len, max_tokens=max_tokens,
                                    max_sentences=max_sentences, required_batch_size_multiple=multiple)


def test_fewer_blocks_than_the_multiple_give_no_batch_and_are_refused_naming_split_language_and_flag():
    batches = fairseq_batches(5, 32, max_sentences=16, multiple=8)
    assert len(batches) == 0  # the premise: fairseq drops them all
    with pytest.raises(BalkdError) as err:
        check_split_has_batches(batches, "valid_eu", ["eu"], 5, 8, None, 16)
    message = str(err.value)
    assert "'valid_eu' split of language 'eu'" in message and "5 block(s)" in message
    assert "fewer than --required-batch-size-multiple 8" in message


def test_a_split_whose_blocks_are_all_skipped_as_too_long_is_refused_naming_the_flags():
    """--skip-invalid-size-inputs-valid-test drops blocks longer than --max-tokens before batching."""
    batches = fairseq_batches(0, 32, max_tokens=16, multiple=1)  # what is left of 20 blocks: none
    with pytest.raises(BalkdError) as err:
        check_split_has_batches(batches, "train", ["de", "eu"], 20, 1, 16, None)
    assert "'train' split (2 languages) has 20 block(s)" in str(err.value) and "--max-tokens 16" in str(err.value)


def test_a_split_with_at_least_one_batch_passes():
    batches = fairseq_batches(9, 32, max_sentences=16, multiple=8)
    assert len(batches) == 1
    check_split_has_batches(batches, "valid", ["de", "eu"], 9, 8, None, 16)
