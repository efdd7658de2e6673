"""A tiny but real project for the evaluation tests, built once per test session.

Two synthetic languages (``aa``, ``bb``) from a tagged toy grammar; one SentencePiece model and one
fairseq dictionary for both; ``DATA/<lang>/{train,valid,test}`` binarized with fairseq's own
preprocessing; a 2-layer RoBERTa trained for a few updates by stock ``fairseq-train --task masked_lm``
(run with ``--user-dir balkd_fairseq``); and probing files in balkd-synth's layout
``PROBE/pos/<lang>/*.conllu`` and ``PROBE/ner/<lang>/*.iob2``.
"""
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(REPO, "balkd_fairseq")
LANGUAGES = ["aa", "bb"]
SPLITS = {"train": 300, "valid": 40, "test": 40}
PROBE_SPLITS = {"train": 120, "dev": 30, "test": 40}

# Every word's tag follows from the word itself, so a probe on any reasonable encoder learns it.
LEXICON = {
    "aa": {
        "DET": ["ta", "ko"],
        "ADJ": ["bravo", "zelti", "mura"],
        "NOUN": ["miru", "sabo", "lenta", "gorim"],
        "VERB": ["dasa", "fulo", "pekin"],
        "ADP": ["ni"],
        "PER": ["Anna", "Boris", "Cato"],
        "LOC": [("Nova", "Vila"), ("Sol", "Porto")],
    },
    "bb": {
        "DET": ["el", "su"],
        "ADJ": ["grandi", "vesko", "rapa"],
        "NOUN": ["kastel", "dorin", "mebo", "tufa"],
        "VERB": ["korra", "binda", "salo"],
        "ADP": ["em"],
        "PER": ["Dario", "Elin", "Fedra"],
        "LOC": [("Kara", "Dag"), ("Monte", "Bel")],
    },
}


@dataclass
class TinyProject:
    root: str
    data: str  # DATA: dict.txt, spm.model, <lang>/{train,valid,test}.{bin,idx}
    probe_dir: str  # PROBE/{pos,ner}/<lang>/...
    checkpoint: str  # trained tiny RoBERTa


def tagged_sentence(lexicon, rng):
    """(words, upos, ner) of one sentence: [PER] VERB DET [ADJ] NOUN [ADP LOC LOC]."""
    words, upos, ner = [], [], []

    def add(word, pos, tag="O"):
        words.append(word), upos.append(pos), ner.append(tag)

    if rng.random() < 0.6:
        add(rng.choice(lexicon["PER"]), "PROPN", "B-PER")
    else:
        add(rng.choice(lexicon["DET"]), "DET")
        add(rng.choice(lexicon["NOUN"]), "NOUN")
    add(rng.choice(lexicon["VERB"]), "VERB")
    add(rng.choice(lexicon["DET"]), "DET")
    if rng.random() < 0.5:
        add(rng.choice(lexicon["ADJ"]), "ADJ")
    add(rng.choice(lexicon["NOUN"]), "NOUN")
    if rng.random() < 0.5:
        add(rng.choice(lexicon["ADP"]), "ADP")
        first, second = rng.choice(lexicon["LOC"])
        add(first, "PROPN", "B-LOC")
        add(second, "PROPN", "I-LOC")
    return words, upos, ner


def write_conllu(path, sentences):
    with open(path, "w", encoding="utf-8") as f:
        for n, (words, upos, _) in enumerate(sentences):
            f.write(f"# sent_id = {n}\n# text = {' '.join(words)}\n")
            for i, (word, tag) in enumerate(zip(words, upos), start=1):
                f.write(f"{i}\t{word}\t{word.lower()}\t{tag}\t_\t_\t0\tdep\t_\t_\n")
            f.write("\n")


def write_iob2(path, sentences, lang):
    with open(path, "w", encoding="utf-8") as f:
        for words, _, ner in sentences:
            f.writelines(f"{lang}:{word}\t{tag}\n" for word, tag in zip(words, ner))
            f.write("\n")


def write_probing_data(probe_dir, seed=7):
    for lang in LANGUAGES:
        rng = random.Random(f"{seed}-{lang}-probe")
        for split, n in PROBE_SPLITS.items():
            sentences = [tagged_sentence(LEXICON[lang], rng) for _ in range(n)]
            os.makedirs(os.path.join(probe_dir, "pos", lang), exist_ok=True)
            os.makedirs(os.path.join(probe_dir, "ner", lang), exist_ok=True)
            write_conllu(os.path.join(probe_dir, "pos", lang, f"{split}.conllu"), sentences)
            write_iob2(os.path.join(probe_dir, "ner", lang, f"{split}.iob2"), sentences, lang)


def write_corpus(corpus_dir, seed=3):
    os.makedirs(corpus_dir, exist_ok=True)
    for lang in LANGUAGES:
        rng = random.Random(f"{seed}-{lang}-corpus")
        for split, n in SPLITS.items():
            with open(os.path.join(corpus_dir, f"{lang}.{split}.txt"), "w", encoding="utf-8") as f:
                f.writelines(" ".join(tagged_sentence(LEXICON[lang], rng)[0]) + "\n" for _ in range(n))


def train_spm(corpus_dir, data):
    import sentencepiece as spm

    inputs = [os.path.join(corpus_dir, f"{lang}.train.txt") for lang in LANGUAGES]
    spm.SentencePieceTrainer.train(
        input=",".join(inputs), model_prefix=os.path.join(data, "spm"), vocab_size=150,
        hard_vocab_limit=False, character_coverage=1.0, model_type="bpe", bos_id=-1, eos_id=-1,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor()
    processor.Load(os.path.join(data, "spm.model"))
    return processor


def encode_corpus(corpus_dir, sp):
    for lang in LANGUAGES:
        for split in SPLITS:
            src = os.path.join(corpus_dir, f"{lang}.{split}.txt")
            with open(src, encoding="utf-8") as f, open(src + ".spm", "w", encoding="utf-8") as out:
                out.writelines(" ".join(sp.encode(line.strip(), out_type=str)) + "\n" for line in f)


def preprocess(argv):
    from fairseq import options
    from fairseq_cli import preprocess as fairseq_preprocess

    fairseq_preprocess.main(options.get_preprocessing_parser().parse_args(argv))


def binarize(corpus_dir, data):
    joint = os.path.join(corpus_dir, "all.train.txt.spm")
    with open(joint, "w", encoding="utf-8") as out:
        for lang in LANGUAGES:
            with open(os.path.join(corpus_dir, f"{lang}.train.txt.spm"), encoding="utf-8") as f:
                out.write(f.read())
    dict_dir = os.path.join(corpus_dir, "dict")
    preprocess(["--only-source", "--trainpref", joint, "--destdir", dict_dir, "--dict-only", "--workers", "1"])
    shutil.copy(os.path.join(dict_dir, "dict.txt"), os.path.join(data, "dict.txt"))
    for lang in LANGUAGES:
        prefix = os.path.join(corpus_dir, lang)
        preprocess([
            "--only-source", "--srcdict", os.path.join(data, "dict.txt"), "--workers", "1",
            "--trainpref", f"{prefix}.train.txt.spm", "--validpref", f"{prefix}.valid.txt.spm",
            "--testpref", f"{prefix}.test.txt.spm", "--destdir", os.path.join(data, lang),
        ])


def train_tiny_roberta(data_dirs, save_dir, max_update=5, seed=1):
    """Stock fairseq masked-LM training of a 2-layer, 32-dim RoBERTa; returns the checkpoint path."""
    cmd = [
        sys.executable, "-m", "fairseq_cli.train", data_dirs, "--user-dir", PLUGIN,
        "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base",
        "--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--tokens-per-sample", "64", "--sample-break-mode", "eos",
        "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "16", "--max-update", str(max_update),
        "--cpu", "--seed", str(seed), "--save-dir", save_dir, "--no-epoch-checkpoints",
        "--disable-validation", "--log-format", "simple", "--num-workers", "0",
        # a fixture: no prefetch thread, which can abort a stock run's exit (balkd-train stops it)
        "--data-buffer-size", "0",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO, env=plugin_env())
    return os.path.join(save_dir, "checkpoint_last.pt")


def plugin_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def build_tiny_project(root) -> TinyProject:
    root = str(root)
    data, corpus, probe_dir = (os.path.join(root, d) for d in ("DATA", "corpus", "PROBE"))
    os.makedirs(data, exist_ok=True)
    write_corpus(corpus)
    sp = train_spm(corpus, data)
    encode_corpus(corpus, sp)
    binarize(corpus, data)
    for lang in LANGUAGES:
        shutil.copy(os.path.join(data, "dict.txt"), os.path.join(data, lang, "dict.txt"))
    write_probing_data(probe_dir)
    checkpoint = train_tiny_roberta(os.path.join(data, LANGUAGES[0]), os.path.join(root, "ckpt", "tiny"))
    return TinyProject(root, data, probe_dir, checkpoint)


_PROJECT = None


def tiny_project(tmp_path_factory) -> TinyProject:
    """The session's tiny project (built on first use; ``tmp_path_factory`` lives for the session)."""
    global _PROJECT
    if _PROJECT is None:
        _PROJECT = build_tiny_project(tmp_path_factory.mktemp("tiny_project"))
    return _PROJECT
