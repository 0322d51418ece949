"""Data side: text -> byte-level BPE -> verified token files -> training batches.

  corpus   the sources (offline Wikipedia leads, local files, the HF hub), tokenizer, token files
           and their manifest (torch-free)
  prepare  harness-prepare: a corpus as a self-describing folder that trains anywhere offline
  batches  the tokens a run trains on: the verified cache or folder, cut to its cap, as batches
"""
