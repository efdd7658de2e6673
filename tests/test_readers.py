"""CoNLL-U and IOB2 readers, and first-subword alignment with a real SentencePiece model."""

import pytest
import sentencepiece as spm
from fairseq.data import Dictionary

from balkd_fairseq.data.conllu_reader import read_conllu
from balkd_fairseq.data.iob2_reader import read_iob2
from balkd_fairseq.data.subword_alignment import IGNORE_INDEX, TaggedSentence, align_first_subword
from balkd_fairseq.errors import BalkdError

CONLLU = """# sent_id = 1
# text = Vámonos al mar.
1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_
1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_
2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_
3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_
3\ta\ta\tADP\t_\t_\t5\tcase\t_\t_
4\tel\tel\tDET\t_\t_\t5\tdet\t_\t_
5\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\t_
5.1\tva\tir\tVERB\t_\t_\t_\t_\t0:root\t_
6\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_

# sent_id = 2
1\tSí\tsí\tINTJ\t_\t_\t0\troot\t_\t_
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_conllu_skips_multiword_ranges_and_empty_nodes(tmp_path):
    sentences = read_conllu(_write(tmp_path, "x.conllu", CONLLU))
    assert [s.words for s in sentences] == [["Vamos", "nos", "a", "el", "mar", "."], ["Sí"]]
    assert [s.tags for s in sentences] == [["VERB", "PRON", "ADP", "DET", "NOUN", "PUNCT"], ["INTJ"]]


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ("7\tbroken\tline", ":15: malformed CoNLL-U line: 3 tab-separated columns"),
        ("x\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_", ":15: malformed CoNLL-U line"),
        ("7\tmar\tmar\t_\t_\t_\t1\tobl\t_\t_", ":15: word 'mar' has no UPOS tag"),
    ],
)
def test_conllu_malformed_line_names_file_and_line(tmp_path, bad_line, expected):
    path = _write(tmp_path, "bad.conllu", CONLLU.rstrip("\n") + "\n" + bad_line + "\n")
    with pytest.raises(BalkdError) as err:
        read_conllu(path)
    assert str(err.value).startswith(path) and expected in str(err.value)


def test_conllu_missing_or_empty_file(tmp_path):
    with pytest.raises(BalkdError, match="not found"):
        read_conllu(str(tmp_path / "nope.conllu"))
    with pytest.raises(BalkdError, match="no sentences"):
        read_conllu(_write(tmp_path, "empty.conllu", "# only a comment\n\n"))


IOB2 = "en:John\tB-PER\nen:Smith\tI-PER\nen:visited\tO\nen:New\tB-LOC\nen:York\tI-LOC\n\n\nen:en:x\tO\nen:Paris\tB-LOC"


def test_iob2_sentences_tags_and_language_prefix(tmp_path):
    sentences = read_iob2(_write(tmp_path, "x.iob2", IOB2))
    assert [s.words for s in sentences] == [["John", "Smith", "visited", "New", "York"], ["en:x", "Paris"]]
    assert [s.tags for s in sentences] == [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "B-LOC"]]


def test_iob2_without_prefix_keeps_tokens(tmp_path):
    sentences = read_iob2(_write(tmp_path, "x.iob2", "http://x.org\tO\nBerlin\tB-LOC\n"))
    assert sentences == [TaggedSentence(["http://x.org", "Berlin"], ["O", "B-LOC"])]


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ("en:Rome\tLOC", "'LOC' is not an IOB2 tag"),
        ("en:Rome\tE-LOC", "'E-LOC' is not an IOB2 tag"),
        ("en:Rome\tB-", "'B-' is not an IOB2 tag"),
        ("en:Rome\tB-LOC\textra", "malformed line"),
        ("lonely", "malformed line"),
    ],
)
def test_iob2_malformed_line_names_file_and_line(tmp_path, bad_line, expected):
    path = _write(tmp_path, "bad.iob2", "en:a\tO\n\n" + bad_line + "\n")
    with pytest.raises(BalkdError) as err:
        read_iob2(path)
    assert str(err.value).startswith(f"{path}:3:") and expected in str(err.value)


# ---------------------------------------------------------------- first-subword alignment
@pytest.fixture(scope="module")
def spm_and_dict(tmp_path_factory):
    root = tmp_path_factory.mktemp("spm")
    text = root / "text.txt"
    lines = ["the cat sat on the mat", "a dog ran to the park", "cats and dogs"] * 40
    lines += ["unbelievably extraordinary circumstances"]
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(root / "spm"), vocab_size=40, hard_vocab_limit=False,
        model_type="bpe", character_coverage=1.0, bos_id=-1, eos_id=-1, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor()
    sp.Load(str(root / "spm.model"))
    dictionary = Dictionary()
    for i in range(sp.get_piece_size()):
        dictionary.add_symbol(sp.id_to_piece(i))
    return sp, dictionary


def test_label_goes_to_first_subword_only(spm_and_dict):
    sp, dictionary = spm_and_dict
    sentence = TaggedSentence(["the", "unbelievably", "cat", "extraordinary"], ["DET", "ADV", "NOUN", "ADJ"])
    pieces = [sp.encode(w, out_type=str) for w in sentence.words]
    assert len(pieces[1]) > 1 and len(pieces[3]) > 1  # words that split into several pieces
    aligned = align_first_subword(sentence, [0, 1, 2, 3], sp, dictionary, max_tokens=128)
    expected_tokens = [dictionary.bos()] + [dictionary.index(p) for ps in pieces for p in ps] + [dictionary.eos()]
    assert aligned.tokens.tolist() == expected_tokens
    starts, position = [], 1
    for ps in pieces:
        starts.append(position)
        position += len(ps)
    assert aligned.word_positions == starts
    expected_labels = [IGNORE_INDEX] * len(expected_tokens)
    for label, start in enumerate(starts):
        expected_labels[start] = label
    assert aligned.labels.tolist() == expected_labels


def test_words_past_the_length_limit_are_marked(spm_and_dict):
    sp, dictionary = spm_and_dict
    sentence = TaggedSentence(["the", "unbelievably", "cat", "sat"], ["A", "B", "C", "D"])
    n_first_two = 1 + len(sp.encode("the", out_type=str)) + len(sp.encode("unbelievably", out_type=str))
    aligned = align_first_subword(sentence, [0, 1, 2, 3], sp, dictionary, max_tokens=n_first_two + 1)
    assert len(aligned.tokens) == n_first_two + 1 and aligned.tokens[-1] == dictionary.eos()
    assert aligned.word_positions[2:] == [-1, -1]
    assert sorted(aligned.labels[aligned.labels.ne(IGNORE_INDEX)].tolist()) == [0, 1]
