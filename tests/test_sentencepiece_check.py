"""data/sentencepiece_check.py: another SentencePiece model than the data's is refused; the data's is accepted
whatever else DATA holds (other directories, user markers in dict.txt, a damaged split)."""
import random
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from fairseq.data import Dictionary, indexed_dataset

from balkd_fairseq.data.sentencepiece_check import check_sentencepiece_matches
from balkd_fairseq.errors import BalkdError

SYLLABLES = [a + b for a in "ptkmnslrvdg" for b in "aeiou"]


def corpus(seed: int, lines: int = 400) -> list:
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(lines)]


def train_model(text: list, prefix: Path, vocab_size: int) -> Path:
    source = prefix.with_suffix(".txt")
    source.write_text("\n".join(text) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(source), model_prefix=str(prefix), vocab_size=vocab_size, minloglevel=2)
    return prefix.with_suffix(".model")


def make_data(root: Path, marker: str = "") -> tuple:
    """DATA/{dict.txt,spm.model,xx/valid.{bin,idx}} as balkd-prepare lays it out, without stats.json; with
    ``marker``, every sentence starts with that symbol of the user's own (a language tag in dict.txt)."""
    root.mkdir()
    text = corpus(1)
    model = train_model(text, root / "spm", 150)
    processor = spm.SentencePieceProcessor(model_file=str(model))
    encoded = [([marker] if marker else []) + processor.encode(line, out_type=str) for line in text]
    dictionary = Dictionary()
    for pieces in encoded:
        for piece in pieces:
            dictionary.add_symbol(piece)
    dictionary.finalize()
    dictionary.save(str(root / "dict.txt"))
    (root / "xx").mkdir()
    builder = indexed_dataset.make_builder(str(root / "xx" / "valid.bin"), impl="mmap", vocab_size=len(dictionary))
    for pieces in encoded[:100]:
        builder.add_item(torch.IntTensor([dictionary.index(p) for p in pieces] + [dictionary.eos()]))
    builder.finalize(str(root / "xx" / "valid.idx"))
    return root, Dictionary.load(str(root / "dict.txt"))


def check(data: Path, dictionary, model: Path = None):
    return check_sentencepiece_matches(str(model or data / "spm.model"), dictionary, str(data / "dict.txt"),
                                       str(data), "--spm-model")


def test_the_datas_model_passes_and_one_of_another_vocabulary_size_is_refused(tmp_path):
    data, dictionary = make_data(tmp_path / "DATA")
    check(data, dictionary)
    other = train_model(corpus(1), tmp_path / "other", 190)  # the same text, another size: most pieces shared
    with pytest.raises(BalkdError, match=r"--spm-model: .*other.model segments \d+ of 100 sentences"):
        check(data, dictionary, other)


def test_markers_of_the_users_own_in_dict_txt_are_not_another_models_pieces(tmp_path):
    data, dictionary = make_data(tmp_path / "DATA", marker="<en>")
    check(data, dictionary)


def test_other_directories_and_a_damaged_split_are_no_reason_to_refuse(tmp_path):
    data, dictionary = make_data(tmp_path / "DATA")
    (data / "teacher_ckpts").mkdir()  # not a language code: DATA may hold what the user keeps there
    (data / "notes_2024").mkdir()
    check(data, dictionary)
    with open(data / "xx" / "valid.bin", "r+b") as f:
        f.truncate(100)  # an interrupted copy: the commands that read it refuse it by name
    check(data, dictionary)
