"""`hdl aggregate`: collect finished runs into tables (CSV, Markdown, LaTeX) and plots.

``collect`` reads results/runs, ``stats`` computes the statistics over seeds, ``published``
adds USB's published results, ``tables`` words the statistics into tables, ``render``
writes them as Markdown and LaTeX, ``curves`` computes what the curve plots draw (seeds' mean
curves, bands clipped to what the quantity can be), ``plots`` draws the figures, ``display``
names things for humans, ``cli`` ties them up.
"""
