"""A Hugging Face tokenizer that gives exactly fairseq's ids: SentencePiece pieces looked up in ``dict.txt``.

fairseq encodes text with the SentencePiece model into pieces, then looks each piece up in
``dict.txt`` (``<unk>`` if absent). A tokenizer built from the SentencePiece model alone (what
transformers' XLM-R converter does) differs in three ways, all handled here with stock ``tokenizers``
components:

- order: ``dict.txt`` lists the special symbols first and then pieces by corpus frequency, not in
  SentencePiece's id order, and ends with ``madeupwordNNNN`` padding and ``<mask>``. The Unigram model's
  vocabulary here is in dictionary order (ids = fairseq ids), with SentencePiece's scores, so the
  segmentation is SentencePiece's.
- characters SentencePiece does not know: SentencePiece emits each maximal run of them as one
  ``<unk>`` piece whose text is the run; fairseq then finds that text in ``dict.txt`` if the
  training data had it (rare characters such as ``É``). The normalizer brackets every maximal run
  of unknown characters with two private-use marks, and such dictionary entries are stored bracketed,
  so they match a whole run only; a run not in the dictionary stays unknown and the Unigram model
  turns it into one ``<unk>``, as SentencePiece does.
- pieces SentencePiece has but ``dict.txt`` lacks: fairseq gives ``<unk>``. A Unigram vocabulary
  cannot give two pieces one id, and the piece must stay in the vocabulary for the segmentation to be
  SentencePiece's, so these pieces get ids after the dictionary's; the model's input rows for them copy
  ``<unk>``'s and they are never predicted (:mod:`.hf`). Ids >= ``config.fairseq_dictionary_size`` are
  therefore fairseq's ``<unk>``: the one place where the ids, not the results, differ.

Dictionary entries SentencePiece can never produce (``madeupwordNNNN``) are stored behind a mark
that no normalized text contains, so no input reaches them; marks typed in the text are replaced by
another character SentencePiece does not know, which keeps them unknown as they are for fairseq.

Two more differences come from the pieces' way into fairseq and from ``tokenizers``' normalizer:

- fairseq joins the pieces with spaces and splits the line on any whitespace (``str.split``), so a
  whitespace character that survived SentencePiece's normalization (``U+0085``, ``U+001C``...; a tab
  under the ``identity`` rule) is dropped and splits the piece it is in. A pre-tokenizer removes
  these characters; SentencePiece's segmentation does not cross them when it does not know them,
  which under ``nmt_nfkc`` (balkd-prepare's rule) holds for every one that is not mapped to a space.
- ``tokenizers``' ``Precompiled`` normalizer maps text grapheme by grapheme and loses combining marks
  of decomposed (NFD) text that SentencePiece composes (``u`` + two marks -> ``ǘ``), so NFKC-based
  rules get an NFC step first. Measured with the toy benchmark's vocabulary on 20,000 random strings
  of Unicode letters, symbols and marks, the normalized text then differs from SentencePiece's in 0.7 % of NFC strings and 1.4 % of
  NFD ones (29 % without the step), all with a combining mark after a character NFKC expands or
  marks out of canonical order, which well-formed text does not have.

SentencePiece options whose segmentation these components cannot mirror are refused: pieces not
unigram, byte fallback, whitespace as a suffix, user-defined symbols.
"""
from pathlib import Path
from typing import List, Tuple

from fairseq.data import Dictionary

from ..data.sentencepiece_check import read_model_proto
from ..errors import BalkdError

RUN_OPEN, RUN_CLOSE = "\ue000", "\ue001"  # private use: bracket a run of characters SentencePiece does not know
UNREACHABLE = "\ue002"  # private use: prefix of dictionary entries no text can produce
MARKS = (RUN_OPEN, RUN_CLOSE, UNREACHABLE)
NORMAL, USER_DEFINED = 1, 4  # sentencepiece_model_pb2.ModelProto.SentencePiece.Type
SPECIAL_SCORE = 0.0
NFKC_RULES = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf")  # SentencePiece's normalization rules built on NFKC
# what fairseq's line splitting (str.split) treats as whitespace, besides the space SentencePiece escapes as "▁"
SPLITTING_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace() and c != 0x20)


def _pieces(proto) -> dict:
    return {p.piece: p.score for p in proto.pieces if p.type in (NORMAL, USER_DEFINED)}


def known_characters(proto) -> set:
    """Characters SentencePiece has a single-character piece for (the others become <unk>)."""
    return {piece for piece in _pieces(proto) if len(piece) == 1}


def vocabulary(dictionary: Dictionary, proto) -> Tuple[List[Tuple[str, float]], List[str]]:
    """(Unigram vocabulary in dictionary order + extra pieces, the extra pieces)."""
    pieces = _pieces(proto)
    known = known_characters(proto)
    specials = {dictionary.bos(), dictionary.pad(), dictionary.eos(), dictionary.unk(), dictionary.index("<mask>")}
    vocab = []
    for index, symbol in enumerate(dictionary.symbols):
        if index in specials:
            vocab.append((symbol, SPECIAL_SCORE))
        elif symbol in pieces:
            vocab.append((symbol, pieces[symbol]))
        elif not any(c in known for c in symbol):
            vocab.append((RUN_OPEN + symbol + RUN_CLOSE, SPECIAL_SCORE))
        else:
            vocab.append((UNREACHABLE + symbol, SPECIAL_SCORE))
    in_dictionary = set(dictionary.symbols)
    extra = [piece for piece in pieces if piece not in in_dictionary]
    vocab += [(piece, pieces[piece]) for piece in extra]
    return vocab, extra


def _char_class(chars) -> str:
    return "".join(f"\\x{{{ord(c):x}}}" for c in sorted(chars))


def stand_in_for_marks(known: set) -> str:
    """A private-use character SentencePiece does not know, written in place of a mark typed in the text."""
    return next(chr(c) for c in range(ord(UNREACHABLE) + 1, 0xF8FF) if chr(c) not in known)


def normalizer(proto, known: set):
    """Marks typed in the text replaced, SentencePiece's normalization (as transformers' SpmConverter writes it,
    after NFC for NFKC-based rules), then the run brackets."""
    from tokenizers import Regex, normalizers

    spec = proto.normalizer_spec
    stand_in = stand_in_for_marks(known)
    steps = [normalizers.Replace(mark, stand_in) for mark in MARKS]
    if spec.precompiled_charsmap:
        if spec.name in NFKC_RULES:
            steps.append(normalizers.NFC())
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:  # only spaces: SentencePiece leaves other whitespace alone
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "▁"))
    if spec.add_dummy_prefix:  # Metaspace skips the dummy prefix when the text starts with "▁"; SentencePiece does not
        steps.append(normalizers.Replace(Regex(r"\A▁"), "▁▁"))
    known_class = _char_class(known | {"▁"} | set(SPLITTING_WHITESPACE))  # whitespace: removed, not a run
    unknown = f"[^{known_class}]"
    steps.append(normalizers.Replace(Regex(f"(?<!{unknown})(?={unknown})"), RUN_OPEN))
    steps.append(normalizers.Replace(Regex(f"(?<=[^{known_class}{RUN_OPEN}])(?!{unknown})"), RUN_CLOSE))
    return normalizers.Sequence(steps)


def build_tokenizer(dictionary: Dictionary, spm_file: str, max_length: int):
    """(``PreTrainedTokenizerFast``, extra pieces)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    proto = read_model_proto(spm_file, "--data")
    check_supported(proto, spm_file)
    known = known_characters(proto)
    vocab, extra = vocabulary(dictionary, proto)
    tokenizer = Tokenizer(Unigram(vocab, unk_id=dictionary.unk(), byte_fallback=False))
    tokenizer.normalizer = normalizer(proto, known)
    # fairseq's str.split drops whitespace SentencePiece kept; after the Metaspace prefix, which it must not repeat
    steps = [pre_tokenizers.Split(Regex(f"[{_char_class(SPLITTING_WHITESPACE)}]+"), behavior="removed")]
    if proto.normalizer_spec.add_dummy_prefix:
        # "always": fairseq's fill_mask encodes the text on each side of <mask> separately, each with the prefix
        steps.insert(0, pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(mark, "") for mark in MARKS]
        + [decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(content=" ", left=1)])
    bos, eos = dictionary.bos_word, dictionary.eos_word
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, dictionary.bos()), (eos, dictionary.eos())])
    mask = AddedToken("<mask>", lstrip=True, special=True, normalized=False)
    tokenizer.add_special_tokens([bos, dictionary.pad_word, eos, dictionary.unk_word, mask])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=dictionary.unk_word, pad_token=dictionary.pad_word, mask_token=mask, model_max_length=max_length)
    return wrapped, extra


def check_supported(proto, spm_file: str) -> None:
    """Refuse SentencePiece options whose segmentation the tokenizer built here would not reproduce."""
    trainer = proto.trainer_spec
    reasons = []
    if trainer.model_type != 1:  # UNIGRAM
        reasons.append("is not a unigram model (balkd-prepare trains unigram)")
    if trainer.byte_fallback:
        reasons.append("uses byte fallback, which fairseq's dict.txt lookup does not mirror")
    if trainer.treat_whitespace_as_suffix:
        reasons.append("treats whitespace as a suffix")
    user_defined = [p.piece for p in proto.pieces if p.type == USER_DEFINED]
    if user_defined:
        reasons.append(f"has user-defined symbols ({', '.join(user_defined[:3])}), which it always keeps whole")
    if reasons:
        raise BalkdError(f"--format hf: {spm_file} {reasons[0]}; the Hugging Face tokenizer cannot reproduce its "
                         "segmentation (--format fairseq still works)")


# transformers 5 saves its fast tokenizer as "TokenizersBackend", a name transformers 4 does not know;
# "PreTrainedTokenizerFast" is the same class under its transformers 4 name, which transformers 5 keeps as an alias
TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def write_tokenizer(tokenizer, out: Path) -> None:
    from ..files import read_json
    from ..outputs import write_json

    tokenizer.save_pretrained(str(out))
    config_file = out / "tokenizer_config.json"
    config = read_json(str(config_file), "tokenizer_config.json")
    write_json(config_file, {**config, "tokenizer_class": TOKENIZER_CLASS})
