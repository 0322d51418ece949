"""What a fit is written as (torch-free): fit.json and report.md, figures, and comparisons.

  document  fit.json (the contract other tools read) and report.md
  horizon   report.md's sections on how far the law holds
  groups    report.md's section on groups side by side: laws, compute multipliers, differences
  fmt       numbers as report.md writes them
  plots     one function per figure (matplotlib Agg), each returning its Figure
  groupfig  groups.png: each group's law and its compute multiplier
  mixfig    mixing.png: each domain's loss against the mixture's weights, its law, the check
  figkit    what the figures share: axis names with the fit's conventions, form styles, dodging
  compare   did a rerun reproduce a reference study?
"""
