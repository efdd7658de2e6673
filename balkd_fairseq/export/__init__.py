"""``balkd-export``: a trained masked LM as folders that stock tools open.

- :mod:`.source`      the checkpoint and the data it was trained on, checked against each other;
- :mod:`.output_dir`  the output folder: built beside ``--out``, moved into place, replaced only with ``--force``;
- :mod:`.fairseq_dir` ``OUT/fairseq``: ``model.pt`` (weights + a plain ``masked_lm`` config), ``dict.txt``, ``spm.model``;
- :mod:`.hf`          ``OUT/hf``: ``config.json`` + ``model.safetensors`` for ``XLMRobertaForMaskedLM``;
- :mod:`.hf_tokenizer` ``OUT/hf``: a ``tokenizers`` tokenizer that encodes exactly as fairseq does;
- :mod:`.model_card`  ``OUT/README.md``;
- :mod:`.parity`      a stand-alone script that runs either export on text (used by the tests).

transformers, tokenizers and safetensors (``pip install .[hf]``) are imported only by the HF modules.
"""
