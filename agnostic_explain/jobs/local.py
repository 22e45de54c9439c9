"""The local backend: one worker thread per device, fed chunks through a bounded queue.

Threads are enough: ONNX Runtime releases the GIL while it runs, and so do numpy's large
operations. The queue holds at most two chunks per worker, so a data set larger than memory
streams through. The first error stops the feeding; the workers finish (and commit) the
chunk they hold, and the error is raised in the calling thread.
"""

from __future__ import annotations

import queue
import threading
from functools import partial

__all__ = ["run_local"]

_POLL = 0.1  # seconds between checks of the stop flag while blocked on the queue


def run_local(tasks, workers, commit, on_rows=None) -> None:
    """Run ``tasks`` (an iterator of ChunkTask) on ``workers`` (ChunkWorker), calling ``commit(record)``.

    ``commit`` is called from the worker threads, one at a time; ``on_rows(index, k)`` hears
    that ``k`` more rows of chunk ``index`` are done while it runs.
    """
    pending: queue.Queue = queue.Queue(maxsize=2 * len(workers))
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(worker):
        try:
            while not stop.is_set():
                try:
                    task = pending.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if task is None:
                    return
                record = worker.process(task, None if on_rows is None else partial(on_rows, task.index))
                with lock:
                    commit(record)
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            with lock:
                errors.append(error)
            stop.set()

    threads = [threading.Thread(target=work, args=(worker,), name=f"explain-{worker.device}", daemon=True)
               for worker in workers]
    for thread in threads:
        thread.start()
    try:
        for task in tasks:
            if not _put(pending, task, stop):
                break
        for _ in threads:
            if not _put(pending, None, stop):
                break
        for thread in threads:
            while thread.is_alive():
                thread.join(_POLL)
    except BaseException:  # Ctrl-C: let each worker commit the chunk it holds, then stop
        stop.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]


def _put(pending: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            pending.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False
