"""Word vectors from subword states (balkd-probe --word-pooling): the first, the last or the mean of a word's
subwords, words cut off by the length limit left out, a word cut inside keeping the pieces that fit."""
import pytest
import torch

from balkd_fairseq.data.subword_alignment import AlignedSentence
from balkd_fairseq.eval.word_pooling import WORD_POOLINGS, pool_words


@pytest.fixture
def sentence():
    # <s> w0 | w1 w1 w1 | w2 w2 </s> (w2 cut after two pieces) then w3, cut off entirely
    tokens = torch.arange(8)
    return AlignedSentence(tokens, word_positions=[1, 2, 5, -1], word_ends=[2, 5, 7, -1])


def test_each_pooling_reads_the_words_own_subwords(sentence):
    states = torch.randn(8, 3, dtype=torch.float32)
    expected = {
        "first": torch.stack([states[1], states[2], states[5]]),
        "last": torch.stack([states[1], states[4], states[6]]),
        "mean": torch.stack([states[1], states[2:5].mean(0), states[5:7].mean(0)]),
    }
    for pooling in WORD_POOLINGS:
        pooled = pool_words(states, sentence, pooling)
        assert pooled.dtype == states.dtype and pooled.shape == (3, 3), "the cut-off word is left out"
        torch.testing.assert_close(pooled, expected[pooling], atol=1e-6, rtol=1e-6)


def test_mean_of_a_long_padded_row_is_not_disturbed_by_large_states_elsewhere(sentence):
    states = torch.zeros(8, 2)
    states[2:5] = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    states[0], states[7] = 1e8, -1e8  # <s> and </s>: never part of a word
    assert pool_words(states, sentence, "mean")[1].tolist() == [3.0, 4.0]


def test_an_unknown_pooling_is_refused(sentence):
    with pytest.raises(ValueError, match="unknown word pooling 'max'; choose from first, last, mean"):
        pool_words(torch.zeros(8, 2), sentence, "max")


def test_a_sentence_whose_words_are_all_cut_off_gives_no_rows():
    sentence = AlignedSentence(torch.arange(2), word_positions=[-1], word_ends=[-1])
    for pooling in WORD_POOLINGS:
        assert pool_words(torch.randn(2, 4), sentence, pooling).shape == (0, 4)


def test_the_share_of_words_starting_with_a_bare_boundary_piece():
    from fairseq.data import Dictionary

    from balkd_fairseq.eval.probing_data import WORD_BOUNDARY, EncodedSplit, bare_boundary_rate

    dictionary = Dictionary()
    boundary, word = dictionary.add_symbol(WORD_BOUNDARY), dictionary.add_symbol("\u2581cat")
    letters = dictionary.add_symbol("\u0928\u094b")
    # "▁ नो" (bare boundary then letters), "▁cat", and a third word cut off: 1 of the 2 kept words
    aligned = AlignedSentence(torch.LongTensor([0, boundary, letters, word, 2]), [1, 3, -1], [3, 4, -1])
    assert bare_boundary_rate(EncodedSplit([], [aligned]), dictionary) == 0.5
    assert bare_boundary_rate(EncodedSplit([], []), dictionary) == 0.0
    assert bare_boundary_rate(EncodedSplit([], [aligned]), Dictionary()) == 0.0, "a vocabulary without the marker"


def test_balkd_probe_warns_about_a_language_whose_first_subwords_are_mostly_bare_boundaries(caplog):
    from balkd_fairseq.eval.probing_run import _warn_bare_boundaries

    with caplog.at_level("WARNING"):
        _warn_bare_boundaries("hi", 0.41)
        _warn_bare_boundaries("de", 0.16)
    assert [r.getMessage()[:70] for r in caplog.records] == [
        "hi test: 41% of the words start with a bare word-boundary piece, the s"]
    assert "--word-pooling mean" in caplog.records[0].getMessage()
