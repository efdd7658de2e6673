"""balkd-fairseq: balanced multilingual masked LMs by multi-teacher knowledge distillation (a fairseq plugin)."""
import re

from setuptools import find_packages, setup

# the version lives in balkd_fairseq/version.py only; importing the package here would need torch and fairseq
VERSION = re.search(r'__version__ = "([^"]+)"', open("balkd_fairseq/version.py", encoding="utf-8").read()).group(1)

COMMANDS = {
    "balkd-train": "balkd_fairseq.cli.train:main",
    "balkd-eval-lm": "balkd_fairseq.cli.eval_lm:main",
    "balkd-probe": "balkd_fairseq.cli.probe:main",
    "balkd-report": "balkd_fairseq.cli.report:main",
    "balkd-prepare": "balkd_fairseq.cli.prepare:main",
    "balkd-synth": "balkd_fairseq.cli.synth:main",
    "balkd-train-teachers": "balkd_fairseq.cli.train_teachers:main",
    "balkd-cache-teachers": "balkd_fairseq.cli.cache_teachers:main",
    "balkd-export": "balkd_fairseq.cli.export:main",
}
# balkd-export --format hf; imported lazily, never by training (same pins as requirements/hf.txt)
HF_EXTRA = ["transformers==5.24.0", "tokenizers==0.23.3", "safetensors==0.8.0"]

setup(
    name="balkd-fairseq",
    version=VERSION,
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["balkd_fairseq", "balkd_fairseq.*"]),
    # torch and fairseq-fixed are installed by scripts/install.sh (CPU wheel / the user's CUDA torch,
    # fairseq-fixed with --no-deps); listing them here would let pip resolve another torch.
    install_requires=[
        "sentencepiece",
        "sacremoses",
        "conllu",
        "seqeval",
        "tqdm",
        "matplotlib",
        "tensorboardX",
    ],
    extras_require={"hf": HF_EXTRA},
    entry_points={"console_scripts": [f"{name}={target}" for name, target in COMMANDS.items()]},
)
