"""examples/toy/lookup_baselines.py: the lookup taggers that tell how much of a probing score needs no encoder."""

import pytest
from helpers import load_example

from balkd_fairseq.data.subword_alignment import TaggedSentence


@pytest.fixture(scope="module")
def lookup():
    module = load_example("examples/toy/lookup_baselines.py", "lookup_baselines")
    return module


def test_a_word_takes_its_most_frequent_training_tag_and_unseen_words_the_fallback(lookup):
    train = [TaggedSentence(["run", "run", "fast"], ["VERB", "VERB", "ADV"]), TaggedSentence(["run"], ["NOUN"])]
    test = [TaggedSentence(["run", "fast", "slow"], ["NOUN", "ADV", "ADV"])]
    # run -> VERB (2 of 3), fast -> ADV, slow unseen -> the most frequent tag overall (VERB)
    assert lookup.lookup_score(train, test, lambda w: w, "accuracy") == pytest.approx(1 / 3)
    # keyed by length (as a first subword is a coarser key than the word), "slow" gets the tag of "fast"
    assert lookup.lookup_score(train, test, len, "accuracy") == pytest.approx(2 / 3)


def test_ner_lookup_leaves_unseen_words_outside_entities(lookup):
    train = [TaggedSentence(["Ana", "sings"], ["B-PER", "O"])]
    test = [TaggedSentence(["Ana", "Bo", "sings"], ["B-PER", "B-PER", "O"])]
    assert lookup.lookup_score(train, test, lambda w: w, "f1") == pytest.approx(2 * 1 * 0.5 / 1.5)
