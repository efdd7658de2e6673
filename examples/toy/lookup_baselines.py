"""How much of a probing score a lookup table gets, with no encoder at all.

    python examples/toy/lookup_baselines.py --bench outputs/sweep/diverse/benchmark [--train-sentences 30,100,0]

For each language of a benchmark (``BENCH/synth/{pos,ner}``, ``BENCH/data/spm.model``), POS accuracy and NER
F1 on the test split of two taggers that look a word's tag up in the probe's training sentences (its most
frequent tag there; ``O``/the most frequent tag for a key never seen):

* ``word``: keyed by the whole word form, what a probe can reach by memorising word identities;
* ``first piece``: keyed by the word's first SentencePiece subword, what a first-subword probe can read
  from token identity alone.

Beside them the share of test words whose first subword is the bare word-boundary piece ``▁``. A probe on
first subwords scoring about the ``first piece`` lookup reads little beyond token identity; a large gap
between the two lookups is what ``balkd-probe --word-pooling mean`` can give back.
"""
import argparse
import os
from collections import Counter, defaultdict
from typing import Callable, Dict, List

from balkd_fairseq.data.sentencepiece_check import load_processor
from balkd_fairseq.data.subword_alignment import TaggedSentence, word_pieces
from balkd_fairseq.eval.probing_data import WORD_BOUNDARY, read_tagged
from balkd_fairseq.eval.tagging_metrics import COUNTS, FROM_COUNTS

TASKS = {"pos": ("conllu", "accuracy"), "ner": ("iob2", "f1")}


def lookup_tagger(train: List[TaggedSentence], key: Callable[[str], str], unseen: str) -> Callable[[str], str]:
    counts: Dict[str, Counter] = defaultdict(Counter)
    for sentence in train:
        for word, tag in zip(sentence.words, sentence.tags):
            counts[key(word)][tag] += 1
    best = {k: c.most_common(1)[0][0] for k, c in counts.items()}
    return lambda word: best.get(key(word), unseen)


def lookup_score(train, test, key, metric: str) -> float:
    unseen = "O" if metric == "f1" else Counter(t for s in train for t in s.tags).most_common(1)[0][0]
    tag = lookup_tagger(train, key, unseen)
    predicted = [[tag(word) for word in sentence.words] for sentence in test]
    return FROM_COUNTS[metric](COUNTS[metric]([s.tags for s in test], predicted))


def rows(bench: str, sizes: List[int]):
    sp = load_processor(os.path.join(bench, "data", "spm.model"), "--bench")
    first_piece = lambda word: (word_pieces(sp, word) or [""])[0]  # noqa: E731
    languages = sorted(os.listdir(os.path.join(bench, "synth", "pos")))
    for lang in languages:
        pos_test = read_tagged(os.path.join(bench, "synth", "pos", lang, "test.conllu"))
        words = [w for s in pos_test for w in s.words]
        bare = sum(first_piece(w) == WORD_BOUNDARY for w in words) / len(words)
        for task, (extension, metric) in TASKS.items():
            train = read_tagged(os.path.join(bench, "synth", task, lang, f"train.{extension}"))
            test = read_tagged(os.path.join(bench, "synth", task, lang, f"test.{extension}"))
            for size in sizes:
                kept = train[:size] if size else train
                yield (lang, task, size or "whole", 100 * lookup_score(kept, test, lambda w: w, metric),
                       100 * lookup_score(kept, test, first_piece, metric), 100 * bare)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True, help="a benchmark directory holding synth/ and data/spm.model")
    parser.add_argument("--train-sentences", default="30,100,0",
                        help="comma-separated probe training sizes in sentences, 0 = the whole split (default: 30,100,0)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.train_sentences.split(",") if x.strip()]
    print("| language | task | train sentences | word lookup | first-piece lookup | test words starting with a bare ▁ |")
    print("|---|---|---|---|---|---|")
    for lang, task, size, word, first, bare in rows(args.bench, sizes):
        print(f"| {lang} | {task} | {size} | {word:.1f} | {first:.1f} | {bare:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
