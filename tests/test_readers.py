"""CoNLL-U and IOB2 readers (fuzzed too), and first-subword alignment with a real SentencePiece model."""
import os

import pytest
import sentencepiece as spm
from fairseq.data import Dictionary
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from balkd_fairseq.data.conllu_reader import read_conllu
from balkd_fairseq.data.iob2_reader import read_iob2
from balkd_fairseq.data.subword_alignment import TaggedSentence, align_words
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


def test_conllu_sentences_without_a_blank_line_between_them_are_refused(tmp_path):
    """Run together, two sentences would be read as one (and cut at the encoder's length limit)."""
    run_together = _write(tmp_path, "joined.conllu", CONLLU.replace(".\tPUNCT\t_\t_\t1\tpunct\t_\t_\n\n", ".\tPUNCT\t_\t_\t1\tpunct\t_\t_\n"))
    with pytest.raises(BalkdError) as err:
        read_conllu(run_together)
    assert str(err.value) == f"{run_together}:13: token id 1 after 6 without a blank line between sentences"
    backwards = _write(tmp_path, "backwards.conllu", CONLLU.replace("6\t.\t", "4\t.\t"))
    with pytest.raises(BalkdError, match=r"backwards.conllu:11: token id 4 after 5: ids must rise"):
        read_conllu(backwards)


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


@pytest.mark.parametrize("code", ["zh-min-nan", "be-x-old", "bat-smg", "pt_BR"])
def test_iob2_strips_wikiann_prefixes_of_several_parts(tmp_path, code):
    sentences = read_iob2(_write(tmp_path, "x.iob2", IOB2.replace("en:", f"{code}:")))
    assert [s.words for s in sentences] == [["John", "Smith", "visited", "New", "York"], [f"{code}:x", "Paris"]]


def test_iob2_a_colon_in_one_token_is_not_a_language_prefix(tmp_path):
    text = "ftp:files\tO\nserver\tO\n\nftp:backup\tO\n"
    assert [s.words for s in read_iob2(_write(tmp_path, "x.iob2", text))] == [["ftp:files", "server"], ["ftp:backup"]]
    one_word_first = "ftp:files\tO\n\nftp:backup\tO\nserver\tO\n"
    assert [s.words for s in read_iob2(_write(tmp_path, "y.iob2", one_word_first))] == [["ftp:files"],
                                                                                       ["ftp:backup", "server"]]
    assert [s.words for s in read_iob2(_write(tmp_path, "z.iob2", "en:Paris\tB-LOC\n"))] == [["en:Paris"]]


def test_iob2_document_markers_end_a_sentence_and_are_not_words(tmp_path):
    text = "-DOCSTART-\tO\n\nLondon\tB-LOC\nis\tO\n-DOCSTART- -X- O\nParis\tB-LOC\n"
    sentences = read_iob2(_write(tmp_path, "x.iob2", text))
    assert sentences == [TaggedSentence(["London", "is"], ["B-LOC", "O"]), TaggedSentence(["Paris"], ["B-LOC"])]


def test_conllu_without_its_text_is_refused(tmp_path):
    hidden = "".join(f"{i}\t_\t_\t{tag}\t_\t_\t_\t_\t_\t_\n" for i, tag in enumerate(["NOUN", "VERB"], 1))
    path = _write(tmp_path, "hidden.conllu", hidden + "\n" + hidden)
    with pytest.raises(BalkdError, match=r"hidden.conllu: every FORM is '_'"):
        read_conllu(path)
    one_underscore = "1\t_\t_\tPUNCT\t_\t_\t_\t_\t_\t_\n2\tx\t_\tNOUN\t_\t_\t_\t_\t_\t_\n"
    assert read_conllu(_write(tmp_path, "ok.conllu", one_underscore))[0].words == ["_", "x"]


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


def test_word_positions_are_first_subwords(spm_and_dict):
    sp, dictionary = spm_and_dict
    sentence = TaggedSentence(["the", "unbelievably", "cat", "extraordinary"], ["DET", "ADV", "NOUN", "ADJ"])
    pieces = [sp.encode(w, out_type=str) for w in sentence.words]
    assert len(pieces[1]) > 1 and len(pieces[3]) > 1  # words that split into several pieces
    aligned = align_words(sentence, sp, dictionary, max_tokens=128)
    expected_tokens = [dictionary.bos()] + [dictionary.index(p) for ps in pieces for p in ps] + [dictionary.eos()]
    assert aligned.tokens.tolist() == expected_tokens
    starts, ends, position = [], [], 1
    for ps in pieces:
        starts.append(position)
        position += len(ps)
        ends.append(position)
    assert aligned.word_positions == starts
    assert aligned.word_ends == ends


def test_words_past_the_length_limit_are_marked(spm_and_dict):
    sp, dictionary = spm_and_dict
    sentence = TaggedSentence(["the", "unbelievably", "cat", "sat"], ["A", "B", "C", "D"])
    n_first_two = 1 + len(sp.encode("the", out_type=str)) + len(sp.encode("unbelievably", out_type=str))
    aligned = align_words(sentence, sp, dictionary, max_tokens=n_first_two + 1)
    assert len(aligned.tokens) == n_first_two + 1 and aligned.tokens[-1] == dictionary.eos()
    assert aligned.word_positions == [1, 1 + len(sp.encode("the", out_type=str)), -1, -1]
    assert aligned.word_ends == [1 + len(sp.encode("the", out_type=str)), n_first_two, -1, -1]
    # a word cut after its first subword keeps the pieces that fit
    cut = align_words(sentence, sp, dictionary, max_tokens=n_first_two)
    assert cut.word_positions[:2] == aligned.word_positions[:2] and cut.word_ends[1] == n_first_two - 1


# ---------------------------------------------------------------- byte-order marks, IOB1-style I- tags
def test_conllu_and_iob2_accept_a_utf8_byte_order_mark(tmp_path):
    conllu = tmp_path / "bom.conllu"
    conllu.write_bytes(b"\xef\xbb\xbf" + CONLLU.encode("utf-8"))
    assert read_conllu(str(conllu)) == read_conllu(_write(tmp_path, "plain.conllu", CONLLU))
    bom_first_token = tmp_path / "bom_token.conllu"
    bom_first_token.write_bytes(b"\xef\xbb\xbf1\tS\xc3\xad\tx\tINTJ\t_\t_\t0\troot\t_\t_\n")
    assert read_conllu(str(bom_first_token)) == [TaggedSentence(["Sí"], ["INTJ"])]
    iob2 = tmp_path / "bom.iob2"
    iob2.write_bytes(b"\xef\xbb\xbf" + IOB2.encode("utf-8"))
    assert read_iob2(str(iob2)) == read_iob2(_write(tmp_path, "plain.iob2", IOB2))


def test_iob2_i_tag_without_its_b_tag_opens_an_entity_and_is_counted(tmp_path, caplog):
    text = "a\tI-PER\nb\tI-PER\nc\tO\nd\tI-LOC\n\ne\tB-PER\nf\tI-LOC\ng\tI-LOC\n"
    path = _write(tmp_path, "iob1.iob2", text)
    with caplog.at_level("WARNING"):
        sentences = read_iob2(path)
    assert [s.tags for s in sentences] == [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "B-LOC", "I-LOC"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{path}: 3 I- tag(s) did not continue an entity of their type (first at line 1); "
                        "each was read as the B- tag that starts an entity"]
    caplog.clear()
    read_iob2(_write(tmp_path, "ok.iob2", IOB2))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# ---------------------------------------------------------------- fuzzing: parse or BalkdError, nothing else
FUZZ_EXAMPLES = int(os.environ.get("BALKD_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Arbitrary bytes, and bytes built from the formats' own pieces (so the parsers get past the first line).
CONLLU_PIECES = [b"\t", b"\n", b"\r\n", b"#", b"_", b"1", b"2", b"-", b".", b"0", b"NOUN", b"Vamos", b"\xef\xbb\xbf",
                 b"\xff", b" ", b"10", b"1-2", b"8.1", b"root", b"=", b"|", b"\x00", "é".encode()]
IOB2_PIECES = [b"\t", b"\n", b"\r", b" ", b"O", b"B-", b"I-", b"PER", b"LOC", b"en:", b"x", b"\xef\xbb\xbf", b"\xff",
               b"-", b"\x00", "é".encode(), b"B-PER", b"I-PER"]


# Per CoNLL-U column, values that parse and values that do not.
CONLLU_COLUMNS = [
    [b"1", b"2", b"10", b"1-2", b"8.1", b"x", b"", b"-1", b"1.", b"0"],
    [b"Vamos", "\u00e9".encode("utf-8"), b"_", b"", b"a b", b"\xff"],
    [b"_", b"ir"],
    [b"NOUN", b"VERB", b"_", b""],
    [b"_", b"NN"],
    [b"_", b"Case=Nom", b"=", b"|", b"Case=Nom|Number=Sing"],
    [b"0", b"1", b"_", b"x", b"-3"],
    [b"root", b"_", b""],
    [b"_", b"0:root", b"x", b"1:nsubj|2:obj", b":"],
    [b"_", b"SpaceAfter=No", b"="],
]

IOB2_COLUMNS = [
    [b"en:x", b"x", "\u00e9".encode("utf-8"), b"", b" ", b"en:", b"de:en:y", b"\xff"],
    [b"O", b"B-PER", b"I-PER", b"I-LOC", b"B-", b"X", b"O O", b""],
]


def _pieces(pieces, max_size=3):
    return st.lists(st.sampled_from(pieces), min_size=1, max_size=max_size).map(b"".join)


def _fuzz_bytes(pieces, columns):
    """Raw bytes; runs of the format's pieces; and lines of (about) the format's tab-separated columns."""
    runs = st.lists(st.sampled_from(pieces), max_size=60).map(b"".join)
    fields = [st.sampled_from(values) for values in columns]
    well_formed = st.tuples(*fields).map(b"\t".join)
    near_miss = st.lists(_pieces(pieces), min_size=len(fields) - 1, max_size=len(fields) + 1).map(b"\t".join)
    line = st.one_of(well_formed, well_formed, near_miss, st.just(b""), st.just(b"# comment"))
    lines = st.lists(line, max_size=12).map(b"\n".join)
    return st.one_of(st.binary(max_size=400), runs, lines)


def _parses_or_refuses(reader, tmp_path, suffix, data):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        sentences = reader(str(path))
    except BalkdError as err:
        assert str(err), "an error without a message"
        event("refused with BalkdError")
        return
    event("parsed")
    assert sentences and all(len(s.words) == len(s.tags) > 0 for s in sentences)
    assert all(isinstance(w, str) and w for s in sentences for w in s.words)


@FUZZ
@given(data=_fuzz_bytes(CONLLU_PIECES, CONLLU_COLUMNS))
def test_fuzz_conllu_reader_parses_or_raises_balkd_error(tmp_path, data):
    _parses_or_refuses(read_conllu, tmp_path, ".conllu", data)


@FUZZ
@given(data=_fuzz_bytes(IOB2_PIECES, IOB2_COLUMNS))
def test_fuzz_iob2_reader_parses_or_raises_balkd_error(tmp_path, data):
    _parses_or_refuses(read_iob2, tmp_path, ".iob2", data)
    # whatever it returns is valid IOB2: every I- continues an entity of its type
    try:
        sentences = read_iob2(str(tmp_path / "fuzz.iob2"))
    except BalkdError:
        return
    for s in sentences:
        for previous, tag in zip(["O"] + s.tags, s.tags):
            assert not tag.startswith("I-") or previous[2:] == tag[2:]
