"""What a fit is written as (torch-free): fit.json and report.md, figures, and comparisons.

  document  fit.json (the contract other tools read) and report.md
  horizon   report.md's sections on how far the law holds
  plots     one function per figure (matplotlib Agg), each returning its Figure
  figkit    what the figures share: axis names with the fit's conventions, form styles, dodging
  compare   did a rerun reproduce a reference study?
"""
