"""Is a SentencePiece model the one a data directory's ``dict.txt`` and binarized text were made with?

Text encoded with another model (an earlier ``balkd-prepare`` of the same text, another vocabulary size)
still looks up in the dictionary, mostly, and gives plausible but wrong probing scores and exports. What is
compared, best evidence first:

1. the model's sha256 against the one ``balkd-prepare`` records in ``DATA/stats.json`` (when recorded,
   that settles it);
2. the binarized text: pieces the model made, joined back into text and encoded again by the same model,
   come out the same; another model segments some sentences differently (even one of the same text
   with another vocabulary size, which shares most pieces);
3. without binarized text (an export needs none): the model's pieces against the dictionary, most of
   them missing meaning another model made it (not for BPE models, whose merges leave unused pieces).
"""
import json
import os
from typing import List, Optional

from ..errors import BalkdError
from ..files import file_sha256

# Sentences of the binarized text encoded again (per language, at most a few languages): enough to see a
# model that segments differently, cheap beside loading a checkpoint.
SENTENCES_PER_LANGUAGE = 200
LANGUAGES_CHECKED = 8
# The right model re-encodes every sentence identically; another one of the same text differs on many.
MAX_RESEGMENTED = 0.02
# Symbols of the binarized text that the model lacks: a few distinct ones are the user's own markers added
# to dict.txt (language tags such as <en>), to be left out; many are another model's pieces.
MAX_MARKERS = 5
# Pieces the encoded corpus never produced are missing from a correct dictionary: a few percent.
MAX_MISSING_PIECES = 0.5


def load_processor(spm_file: str, flag: str):
    import sentencepiece as spm

    if not os.path.isfile(spm_file):
        raise BalkdError(f"{flag}: SentencePiece model not found: {spm_file}")
    try:
        return spm.SentencePieceProcessor(model_file=spm_file)
    except (OSError, RuntimeError) as err:
        raise BalkdError(f"{flag}: {spm_file} is not a SentencePiece model: {str(err).splitlines()[0]}") from None


def recorded_sha256(data_dir: str) -> Optional[str]:
    """The sha256 of ``spm.model`` that ``DATA/stats.json`` records, or None (data of an older balkd-prepare, or
    not balkd-prepare's)."""
    path = os.path.join(data_dir, "stats.json")
    try:
        with open(path, encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return None
    record = stats.get("sentencepiece") if isinstance(stats, dict) else None
    value = record.get("sha256") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def check_sentencepiece_matches(spm_file: str, dictionary, dict_file: str, data_dir: str, flag: str):
    """The loaded processor of ``spm_file`` after refusing a model other than the one ``dict_file`` was built
    with (``dictionary``: fairseq's Dictionary of ``dict_file``; ``data_dir``: where stats.json may be)."""
    processor = load_processor(spm_file, flag)
    recorded = recorded_sha256(data_dir)
    if recorded is not None:  # the file balkd-prepare made the data with: nothing weaker to add
        actual = file_sha256(spm_file)
        if recorded != actual:
            raise BalkdError(f"{flag}: {spm_file} is not the SentencePiece model {data_dir} was prepared with "
                             f"({os.path.join(data_dir, 'stats.json')} records sha256 {recorded[:12]}, the file has "
                             f"{actual[:12]})")
        return processor
    if not _check_text_encodes_alike(processor, spm_file, dictionary, data_dir, flag) and not _is_bpe(spm_file):
        _check_pieces_are_symbols(processor, spm_file, dictionary, dict_file, flag)
    return processor


def _check_text_encodes_alike(processor, spm_file: str, dictionary, data_dir: str, flag: str) -> bool:
    """Whether there was binarized text to check (refusing a model that segments it otherwise)."""
    sentences = [pieces for prefix in _binarized_splits(data_dir)[:LANGUAGES_CHECKED]
                 for pieces in _first_sentences(prefix, dictionary)]
    unknown = {piece for pieces in sentences for piece in pieces if processor.piece_to_id(piece) == processor.unk_id()}
    markers = unknown if len(unknown) <= MAX_MARKERS else set()
    resegmented = 0
    for pieces in sentences:
        pieces = [piece for piece in pieces if piece not in markers]
        # a piece this model lacks (and no marker) is another model's: it decodes as ⁇ and does not come back
        resegmented += processor.encode(processor.decode_pieces(pieces), out_type=str) != pieces
    if sentences and resegmented > MAX_RESEGMENTED * len(sentences):
        raise BalkdError(f"{flag}: {spm_file} segments {resegmented} of {len(sentences)} sentences of {data_dir}'s "
                         "binarized text differently from how they were prepared: it is not the SentencePiece model "
                         "that made them")
    return bool(sentences)


def _binarized_splits(data_dir: str) -> List[str]:
    """One binarized split per language directory (``DATA/<lang>/valid``, else test or train); other
    directories of DATA (a user's notes, checkpoints) are not languages here. Export needs none."""
    found = []
    for name in sorted(os.listdir(data_dir)):
        for split in ("valid", "test", "train"):
            prefix = os.path.join(data_dir, name, split)
            if os.path.isfile(prefix + ".idx") and os.path.isfile(prefix + ".bin"):
                found.append(prefix)
                break
    return found


def _first_sentences(prefix: str, dictionary) -> List[List[str]]:
    """The pieces of a split's first sentences, without </s>; none when fairseq cannot read the split (a
    truncated copy: the commands that train or score on it refuse it by name) or a sentence holds <unk>
    (the characters are lost, nothing to re-encode)."""
    from fairseq.data import data_utils

    try:
        dataset = data_utils.load_indexed_dataset(prefix, dictionary)
        rows = [dataset[i].tolist() for i in range(min(len(dataset), SENTENCES_PER_LANGUAGE))]
    except (ValueError, AssertionError, OSError, IndexError):  # fairseq's reader asserts on a damaged index
        return []
    return [[dictionary[i] for i in ids if i != dictionary.eos()] for ids in rows if dictionary.unk() not in ids]


def read_model_proto(spm_file: str, flag: str):
    """The SentencePiece model's protobuf (its trainer and normalizer settings)."""
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        with open(spm_file, "rb") as f:
            proto.ParseFromString(f.read())
    except DecodeError as err:
        raise BalkdError(f"{flag}: {spm_file} is not a SentencePiece model: {err}") from None
    return proto


def _is_bpe(spm_file: str) -> bool:
    """A BPE model keeps every intermediate merge as a piece, most of which its encodings never produce:
    pieces missing from the dictionary say nothing about it."""
    try:
        proto = read_model_proto(spm_file, "")
    except (ImportError, BalkdError):  # protobuf is optional here: then the pieces are counted
        return False
    return proto.trainer_spec.model_type == proto.trainer_spec.BPE


def _check_pieces_are_symbols(processor, spm_file: str, dictionary, dict_file: str, flag: str) -> None:
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())
              if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i))]
    missing = sum(dictionary.index(piece) == dictionary.unk() for piece in pieces)
    if pieces and missing > MAX_MISSING_PIECES * len(pieces):
        raise BalkdError(f"{flag}: {missing:,} of the {len(pieces):,} pieces of {spm_file} are not in {dict_file}: "
                         "that dictionary was built with another SentencePiece model")
