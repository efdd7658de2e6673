"""examples/toy/heldout_ner.py: NER probing files whose test names never occur in the probe's training files."""
import json
import sys

import pytest
from helpers import REPO, load_example

from balkd_fairseq.cli.synth import main as synth_main


@pytest.fixture(scope="module")
def heldout():
    sys.path.insert(0, str(REPO / "examples" / "toy"))
    module = load_example("examples/toy/heldout_ner.py", "heldout_ner")
    return module


def entity_words(path):
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and line.split("\t")[1] != "O":
            words.add(line.split("\t")[0])
    return words


def test_test_names_are_held_out_of_the_probes_training_files(heldout, tmp_path):
    synth = tmp_path / "synth"
    assert synth_main(["--out", str(synth), "--preset", "shared", "--languages", "de,tr", "--high-size", "60",
                       "--low-size", "30", "--probe-train", "150", "--probe-dev", "20", "--probe-test", "60",
                       "--quiet"]) == 0
    out = tmp_path / "heldout"
    assert heldout.make_probe_files(str(synth), str(out)) == ["de", "tr"]
    counts = json.loads((synth / "languages.json").read_text())["probe_sentences"]
    for lang in ("de", "tr"):
        files = {split: out / "ner" / lang / f"{split}.iob2" for split in heldout.SPLITS}
        for split, path in files.items():
            assert path.read_text(encoding="utf-8").count("\n\n") == counts[split]
        seen = {root: entity_words(root / "ner" / lang / "train.iob2") | entity_words(root / "ner" / lang / "dev.iob2")
                for root in (synth, out)}
        tests = {root: entity_words(root / "ner" / lang / "test.iob2") for root in (synth, out)}
        assert tests[out], "every test sentence holds a name"
        # names are held out; what recurs are organisation words ("Bank", common to both halves, inflected) and
        # a few names spelled like a name of the other half: far fewer than in the benchmark's own files
        recurring = {root: len(seen[root] & tests[root]) / len(tests[root]) for root in (synth, out)}
        assert recurring[out] < 0.25 and recurring[synth] > 0.35, recurring
