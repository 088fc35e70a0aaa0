"""Run an iterator in a background thread, a bounded number of items ahead of its consumer.

The insights load overlaps its two halves this way: while the main thread COPYs one page into Postgres
(and waits for the upsert), the reader thread is already fetching the next pages. Memory
stays bounded by `depth` items.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class ReadAhead(Generic[T]):
    def __init__(self, source: Iterator[T], depth: int = 8, name: str = "read-ahead") -> None:
        self._queue: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _run(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put((item, None)):
                    return
            self._put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_DONE, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple[object, BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, error = self._queue.get()
        if item is _DONE:
            self._finished = True
            if error is not None:
                raise error
            raise StopIteration
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the reader (it finishes the item in hand) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():  # drain so a blocked put returns; poll, as a timed get never times out
            try:                            # under libfaketime (a reader that stopped puts nothing more)
                self._queue.get_nowait()
            except queue.Empty:
                time.sleep(0.01)
        self._finished = True

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
