"""Training the monolingual teachers (``balkd-train-teachers``): one fairseq-train run per language.

- :mod:`.runs`: one teacher's run (flags, resuming, ``--force`` replacing a finished teacher safely);
- :mod:`.records`: what a teacher directory records (completion, every run's flags);
- :mod:`.teachers_json`: the ``--teachers`` mapping the student reads.
"""
