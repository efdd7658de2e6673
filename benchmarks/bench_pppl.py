"""What `balkd-eval-lm --pppl` costs: pseudo-perplexity of each language's test split with the demo's model size.

The model is the demo's (RoBERTa, 2 layers, 96 dims, 4 heads, 64 positions) with random weights (the cost
does not depend on the weights) over DATA/dict.txt. For each language the 15%-masked pass (MLM-PPL) and the
PPPL pass (every token masked in turn) are timed, median of --repeats runs.

    python benchmarks/bench_pppl.py --data outputs/toy/data          # a prepared DATA directory
    python benchmarks/bench_pppl.py                                  # builds one like the demo's (synth + prepare)
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from balkd_fairseq.data.dictionary_hash import load_model_dictionary  # noqa: E402
from balkd_fairseq.eval import pppl  # noqa: E402
from balkd_fairseq.eval.masked_lm_eval import MaskingConfig, masked_dataset, score_dataset, split_prefix  # noqa: E402


def demo_model(dictionary):
    from fairseq.models.roberta import RobertaModel, base_architecture

    class Task:
        source_dictionary = target_dictionary = dictionary

    args = argparse.Namespace(encoder_layers=2, encoder_embed_dim=96, encoder_ffn_embed_dim=192,
                              encoder_attention_heads=4, max_positions=64)
    base_architecture(args)
    torch.manual_seed(0)
    return RobertaModel.build_model(args, Task()).eval()


def build_demo_data(root: str) -> str:
    """The demo's data at a smaller training size (the test split is the demo's: 100 lines per language)."""
    synth, data = os.path.join(root, "synth"), os.path.join(root, "data")
    subprocess.run(["balkd-synth", "--out", synth, "--preset", "shared", "--seed", "1", "--high-size", "3000",
                    "--low-size", "500", "--probe-train", "10", "--probe-test", "10", "--quiet"], check=True)
    subprocess.run(["balkd-prepare", "--raw-dir", os.path.join(synth, "raw"), "--out", data, "--vocab-size", "2000",
                    "--valid-lines", "100", "--test-lines", "100", "--seed", "1", "--quiet"], check=True)
    return data


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a prepared DATA directory (default: build a demo-like one in a temp dir)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or build_demo_data(tmp)
        dictionary = load_model_dictionary(os.path.join(data, "dict.txt"))
        model = demo_model(dictionary)
        languages = sorted(d for d in os.listdir(data) if os.path.isfile(os.path.join(data, d, args.split + ".idx")))
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); model: 2 layers, 96 dims, "
              f"vocabulary {len(dictionary)}; --max-tokens {args.max_tokens}; median of {args.repeats}")
        print("| lang | lines | tokens scored | MLM-PPL pass (s) | PPPL pass (s) | PPPL tokens/s |")
        print("|---|---|---|---|---|---|")
        totals = [0.0, 0.0]
        for lang in languages:
            prefix = split_prefix(data, lang, args.split)
            sentences = pppl.load_sentences(prefix, dictionary)
            tokens = pppl.count_copies(sentences, dictionary)
            dataset = masked_dataset(prefix, dictionary, MaskingConfig(tokens_per_sample=64))
            mlm = timed(lambda: score_dataset(model, dataset, dictionary, args.max_tokens, "cpu"), args.repeats)
            full = timed(lambda: pppl.score_sentences(model, sentences, dictionary, args.max_tokens, "cpu"), args.repeats)
            totals[0] += mlm
            totals[1] += full
            print(f"| {lang} | {len(sentences)} | {tokens} | {mlm:.2f} | {full:.2f} | {tokens / full:.0f} |")
        print(f"| all | | | {totals[0]:.2f} | {totals[1]:.2f} | |")


if __name__ == "__main__":
    main()
