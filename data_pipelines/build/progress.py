"""A progress bar (items done / total, rate, ETA) for a build under a local Beam runner.

Beam's metrics cannot serve here: the DirectRunner (its FnApiRunner) runs the whole pipeline
inside `pipeline.run()` and only then answers `result.metrics()`, and its multi-process mode
keeps counters in the worker processes until the end. So every worker appends one byte per
finished item to a counter file of its own in a folder the driver can see, and a driver thread
sums the file sizes while the pipeline runs. Only for runners whose workers share this machine's
disk; on remote runners (Dataflow, Flink, Spark) their own UI shows progress.
"""
from __future__ import annotations

import contextlib
import os
import threading
import uuid

_POLL_SECONDS = 0.5
# Runners whose workers run on this machine (names as given to --runner, case-insensitive).
LOCAL_RUNNERS = ("directrunner", "direct", "switchingdirectrunner", "bundlebaseddirectrunner",
                 "prismrunner", "prism")


class ProgressCounter:
    """Worker side: `tick()` once per finished item. Pickles to its folder only, so each worker
    process (and each DoFn instance) opens a file of its own."""

    def __init__(self, folder: str | None):
        self.folder = folder
        self._file = None

    def __getstate__(self):
        return {"folder": self.folder, "_file": None}

    def tick(self) -> None:
        if self.folder is None:
            return
        if self._file is None:
            self._file = open(os.path.join(self.folder, f"{uuid.uuid4().hex}.count"), "ab",
                              buffering=0)
        self._file.write(b".")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def items_done(folder: str) -> int:
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total


@contextlib.contextmanager
def progress_bar(folder: str | None, total: int, *, description: str = "curating"):
    """Show items done / total while the body runs; a no-op when folder is None."""
    if folder is None:
        yield
        return
    from tqdm import tqdm
    stop = threading.Event()
    bar = tqdm(total=total, desc=description, unit="item", dynamic_ncols=True)

    def poll():
        while True:
            # A retried bundle counts its items twice: never show more than the total.
            bar.update(min(items_done(folder), total) - bar.n)
            if stop.wait(_POLL_SECONDS):
                return

    thread = threading.Thread(target=poll, name="build-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.update(min(items_done(folder), total) - bar.n)
        bar.close()
