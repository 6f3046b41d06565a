"""Results of finished runs: comparison tables and curves (``compare``; ``python -m msgzoo.report``), the
paper's read-off numbers (``paper_units``), per-run plots (``plotting``) and the sweep figures (``figures``)."""
