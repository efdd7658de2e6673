"""Property-based fuzzing of the readers: on arbitrary bytes they parse or raise BalkdError, never anything else.

A few seconds in CI; set BALKD_FUZZ_EXAMPLES (e.g. 5000) for a longer search.
"""
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balkd_fairseq.data.raw_text import LINE_SEPARATORS, text_lines
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.files import numbered_lines, read_json

EXAMPLES = int(os.environ.get("BALKD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# bytes that look like JSON often enough to reach the parser's deeper paths, and plain random bytes
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
).map(lambda value: json.dumps(value).encode("utf-8"))
mutated = st.tuples(json_like, st.binary(max_size=6), st.integers(0, 64)).map(
    lambda t: t[0][: t[2]] + t[1] + t[0][t[2]:])
any_bytes = st.one_of(st.binary(max_size=300), json_like, mutated,
                      st.sampled_from([b"[" * 100_000, b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}", b"1" * 5000]))


@FUZZ
@given(data=any_bytes)
def test_json_reader_parses_or_raises_balkd_error(tmp_path, data):
    path = tmp_path / "f.json"
    path.write_bytes(data)
    try:
        read_json(str(path), "--teachers")
    except BalkdError as err:
        assert str(path) in str(err) and "\n" not in str(err)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=200).map(lambda t: t.encode("utf-8"))),
       max_chars=st.sampled_from([0, 10, 50]))
def test_raw_text_reader_reads_or_raises_balkd_error(tmp_path, data, max_chars):
    path = tmp_path / "raw.txt"
    path.write_bytes(data)
    try:
        lines = list(text_lines(path, max_chars=max_chars))
    except BalkdError as err:
        assert str(path) in str(err) and ("line" in str(err) or "-compressed, not text" in str(err))
        return
    assert all(line and line == line.strip() for line in lines)
    assert not any(set(line) & set(LINE_SEPARATORS) for line in lines), "none left to split a line later"
    assert all(len(line) <= max_chars for line in lines) or not max_chars
    assert len(list(numbered_lines(path, "text"))) == data.count(b"\n") + (not data.endswith(b"\n") and bool(data))


def test_duplicate_keys_are_refused_at_any_depth(tmp_path):
    path = tmp_path / "teachers.json"
    path.write_text('{"de": "a.pt", "eu": {"x": 1, "x": 2}}')
    with pytest.raises(BalkdError, match="duplicate key 'x'"):
        read_json(str(path), "--teachers")
    path.write_text('{"de": "a.pt", "de": "b.pt"}')
    with pytest.raises(BalkdError, match=r"--teachers: .*teachers.json: duplicate key 'de'"):
        read_json(str(path), "--teachers")


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"de": 1}')
    assert read_json(str(path), "x") == {"de": 1}
    text = tmp_path / "bom.txt"
    text.write_bytes(b"\xef\xbb\xbf# sent_id = 1\nline\n")
    assert [line for _, line in numbered_lines(text, "CoNLL-U")] == ["# sent_id = 1", "line"]
