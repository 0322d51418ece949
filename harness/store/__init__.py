"""What a run leaves on disk, read and written by both sides (torch-free).

  records    the run record (summary.json, trunk.json): the one writer and the one reader
  wandb_log  decodes a wandb offline log without a server; says whether it is complete
  lock       one process per cell: an flock on <cell>/.lock
"""
