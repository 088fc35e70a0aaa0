"""Scratch folders of the benchmarks: each holds a whole warehouse (2-3 GB), so each goes when the script exits
(runs left them behind and filled the disk of a shared machine). Set BENCH_KEEP_SCRATCH=1 to keep them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def scratch_dir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("BENCH_KEEP_SCRATCH"):
        atexit.register(shutil.rmtree, path, True)
    return path
