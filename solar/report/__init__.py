"""Results: the paper's Tables 2-7 side by side with ours (``python -m solar.report table=<N>``).

paper.py (the paper's numbers and each table's rows) -> results.py (one run's eval/h6.json) ->
tables.py (the paper's layout: md, csv, json) + findings.py (the paper's claims, checked on our
numbers) + curves.py / plots.py (PNGs) + wandb_report.py (W&B table, run and Report).
"""
