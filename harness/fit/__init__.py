"""Fit side: run records -> a table -> scaling laws with intervals (torch-free, enforced by a test).

  collect        records, wandb logs, a wandb project or a CSV -> one tidy runs table; mapping: where
                 N, D, loss sit in runs the harness did not make; points: runs -> one point per cell
                 under an n_convention (store/counts.py defines each count and convention)
  forms, law, lm the law forms, fitting and bootstrap (law), the Levenberg-Marquardt solver (lm)
  isoflop        Chinchilla approaches 1 and 2; allocate: N*(C), D*(C) of a fitted law
  backtest, extrapolation, frontier
                 held-out tests, intervals that hold beyond the data, the compute-optimal frontier
  analysis       every fit on one table, gathered into what fit.json carries; groups: a law per group
  prediction, ask
                 a prediction made before its check, and questions asked of a law
  coverage, noisefloor, repetition, laws
                 simulated coverage, seed-noise floor, value of repeated tokens, published laws
  mixing         the data mixing law: each domain's loss against the mixture's weights, its best mixture
"""
