"""Training side: a config becomes a Spec, the Spec becomes a trained, recorded run.

  spec        resolve(cfg) -> Spec: sizes, budget, per-size hyperparameters, the cell's id (torch-free)
  accounting  N and FLOPs per token under each convention (torch-free)
  hparams     per-size rules: LR, batch, warmup (torch-free)
  schedule    LR schedules as pure functions of the step (torch-free)
  cell        run(cfg): train one cell unless it is done, under its lock; record it
  loop        the training loop: Session (model, optimizer, batches) and run_steps
  arch        any transformers causal LM from our config (model.hf passes fields through); meta-device counts
  model       HF models from the config, random init
  fastpath    the chunked cross-entropy and compile cache of the training step
  wsd         a constant-LR trunk with a cooldown branch per budget
  track       one wandb run and one record per training run
  checkpoint  a running cell's checkpoint: written atomically, on a clock and on SIGTERM/SIGUSR1; resumed
  dist        one run across processes: ranks, the process group, DDP or FSDP2 around the model
  launch      distributed.nproc=K on one machine: spawn the K processes of a cell, pass signals on
  gpus        a free GPU for each running job of a parallel sweep (torch-free)
  sweep       the Hydra callback that reports a sweep and records cells that could not start

This __init__ imports nothing, so the torch-free modules stay importable without torch.
"""
