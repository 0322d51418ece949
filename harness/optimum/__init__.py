"""Optimum side: from a fitted law to a model to launch at budget C, and its confirmation (torch-free
except the exact parameter count, which builds the model on the meta device).

  law       the study's runs fitted as harness-fit fitted them (a group's own law with group_by)
  shapes    a family's shape rule (conf/family/) and the shape closest to a target count
  generate  N*, D* at C, the confirmation spacing, the config folder and its pre-registered cells
  make      harness-optimum's work, end to end; verdict: score a trained confirmation sweep
"""
