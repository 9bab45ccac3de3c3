"""A one-line progress bar for long CLI operations: drawn on a terminal, silent when output is redirected."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

BAR_WIDTH = 30


class ProgressBar:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty()
        self._drawn = False

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        filled = BAR_WIDTH * min(done, self.total) // self.total
        line = f"  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total} {note}"
        columns = shutil.get_terminal_size().columns
        self.stream.write("\r\x1b[2K" + line[: columns - 1])
        self.stream.flush()
        self._drawn = True

    def message(self, text: str, out: TextIO | None = None) -> None:
        """Print a line above the bar (or just the line, off a terminal); to ``out`` when it is not the bar's
        stream, e.g. job ids on stdout under a bar on stderr."""
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False
        print(text, file=out or self.stream, flush=True)

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
