"""What a run leaves on disk, read and written by both sides (torch-free).

  records    the run record (summary.json, trunk.json): the one writer and the one reader
  wandb_log  decodes a wandb offline log without a server; says whether it is complete
  counts     every count a law can use (N_total, N_nonembed, N_active, D, each C), defined once
  lock       one process per cell: an flock on <cell>/.lock
"""
