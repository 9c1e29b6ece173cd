"""`hdl aggregate`: collect finished runs into tables (CSV, Markdown, LaTeX) and plots.

``collect`` reads results/runs, ``tables`` builds the statistics and renders them,
``plots`` draws the figures, ``display`` names things for humans, ``cli`` ties them up.
"""
