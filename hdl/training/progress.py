"""The training loop's progress bar: tqdm when it shows, a plain printer when it does not (no tqdm needed)."""

from __future__ import annotations

import sys
from typing import Any


class QuietBar:
    """What the loop calls on a tqdm bar, printing only the lines it writes."""

    def update(self, count: int) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def write(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def progress_bar(total: int, initial: int, description: str, shown: bool) -> Any:
    if not shown:
        return QuietBar()
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=description,
        mininterval=0.1 if sys.stderr.isatty() else 30,
        dynamic_ncols=True,
    )
