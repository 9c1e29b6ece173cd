"""Every kind of file the `hdl` commands read, opened and checked before anything is written.

A file that is missing, empty, truncated or foreign (random bytes, a pickle), that lacks a
key or has the wrong dtype or shape, that holds NaN, out-of-range or repeated indices, or
that was made for another grid cell becomes a :class:`~hdl.errors.UserError`: one line that
names the file, says what is wrong and what to do.  The commands read their files here
before they write anything, so a bad file leaves no output behind.

Callers import every reader from here (``from hdl.files import read_split``), never from
the modules below; the grid cell a file records is :class:`hdl.cell.Cell`.

====================  ===================================  ==================================
kind                  reader (module)                      written by
====================  ===================================  ==================================
split .npz            :func:`read_split` (splits)          ``hdl split``
extra labels .npz     :func:`read_extra_labels` (splits)   ``hdl relabel --extra-labels-out``
embeddings .npz/.npy  :func:`read_embeddings`,             ``hdl embed`` (or any (N, d) array
                      :func:`read_array` (embeddings)      and (N,) labels)
relabel output .npz   :func:`read_relabel_output`          ``hdl relabel --out``
                      (embeddings)
checkpoint .pt        :func:`read_checkpoint`              ``hdl train``
                      (checkpoints)
metrics.json          :func:`read_metrics` (reports)       ``hdl train``
relabel.json          :func:`read_relabel_report`          ``hdl relabel --report``
                      (reports)
table .csv            :func:`read_csv` (reports)           the workflow (its grid.csv)
====================  ===================================  ==================================

The readers share ``opening`` (the file as messages name it; .npy, .npz and JSON read
without unpickling or trusting them) and ``checks`` (integers, numbers, fractions, the
recorded cell against the wanted one).

Identity: splits, embeddings, HDL's labels and extra labels record the :class:`~hdl.cell.Cell` they
were made for (data set, labels, imbalance, seed, class count; from a trained model also its
method) as the JSON string ``cell``; checkpoints and metrics.json carry the same fields in
their config.  Given the cell a command is for, a reader refuses a file of another cell and
prints both.  A file without a recorded cell (written before cells were recorded) is of an
unknown cell: it is read, not compared.  Split files holding ``dataset``, ``labels``, ... as
separate arrays, as `hdl split` used to write them, are read with that identity.
"""

from hdl.files.checkpoints import CHECKPOINT_KEYS, checkpoint_cell, read_checkpoint
from hdl.files.checks import preview
from hdl.files.embeddings import read_array, read_embeddings, read_relabel_output
from hdl.files.opening import short_reason
from hdl.files.reports import read_csv, read_metrics, read_relabel_report
from hdl.files.splits import read_extra_labels, read_split

__all__ = [
    "CHECKPOINT_KEYS",
    "checkpoint_cell",
    "preview",
    "read_array",
    "read_checkpoint",
    "read_csv",
    "read_embeddings",
    "read_extra_labels",
    "read_metrics",
    "read_relabel_output",
    "read_relabel_report",
    "read_split",
    "short_reason",
]
