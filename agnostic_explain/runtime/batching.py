"""The one batching mechanism: every explainer and ``predict`` run their rows through here.

An explainer describes its work as ``n`` rows of the explained input, built on demand by
``make_rows(start, stop)``, with ``owners[i]`` naming the explained row that row ``i``
perturbs (so fixed inputs and targets follow it). :func:`evaluate` cuts the rows into
batches, feeds the other inputs, runs the model, and reduces each batch of outputs at once
(to target scalars, usually), so that only what is needed is kept.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable

import numpy as np

from ..errors import ModelExecutionError, OutOfMemoryError, ParameterError
from .feeds import Feeds
from .tuning import recall, remember

#: input and output bytes one batch may hold when the batch size is chosen automatically
MEMORY_BUDGET = 256 << 20
#: the largest batch the automatic choice tries
MAX_AUTO_BATCH = 1 << 16
#: rows larger than this (images, say) stop at ``MAX_LARGE_ROW_BATCH``: a convolutional
#: network's activations are tens of times its input, and CPU memory has no soft failure
LARGE_ROW_BYTES = 64 << 10
MAX_LARGE_ROW_BATCH = 128
#: a size counts as an improvement when its throughput beats the best so far by this factor
_IMPROVES = 1.03
#: sizes in a row that may fail to improve before growth stops (throughput measurements are noisy)
_PATIENCE = 1
#: the size kept is the largest whose throughput is within this fraction of the best
_PLATEAU = 0.97
#: timed batches per size while growing (after one untimed batch that pays for allocations)
_TIMED = 2


class BatchSizer:
    """Chooses batch sizes: fixed when asked, else doubles while throughput keeps up.

    The growing phase runs real rows, so measuring costs no extra model calls. Each size
    runs once untimed (the first run at a new shape pays for allocations), then
    ``_TIMED`` times timed. Growth stops after two sizes in a row that do not raise the best
    throughput by 3%, at the memory cap, or at ``MAX_AUTO_BATCH`` (``MAX_LARGE_ROW_BATCH`` for
    rows over 64 KiB; small rows start at about 1 MiB of input, up to 8,192 rows, rather than 4): larger batches cost
    memory and a slow first run, so they must earn their place. The size kept is the largest one on
    the plateau (within 3% of the best), and it is remembered on the model, per explained
    input, for later calls; a call that ends while growing keeps the best of the sizes it
    compared. An out-of-memory failure halves the size and the batch is retried.
    """

    def __init__(self, model, key, row_bytes: int, requested=None):
        self.model, self.key = model, key
        requested = model.batch_size if requested is None else requested
        largest = MAX_LARGE_ROW_BATCH if row_bytes > LARGE_ROW_BYTES else MAX_AUTO_BATCH
        self.cap = max(1, min(largest, MEMORY_BUDGET // row_bytes))
        learned = None
        if requested == "auto":
            learned = model.tuned_batch_sizes.get(key) or recall(model, key)
            if learned:
                model.tuned_batch_sizes[key] = learned
        if requested != "auto":
            if not isinstance(requested, (int, np.integer)) or isinstance(requested, bool) or requested < 1:
                raise ParameterError(f"batch_size must be a positive int or 'auto', got {requested!r}")
            self.size, self.growing = int(requested), False
        elif learned:
            self.size, self.growing = min(learned, self.cap), False
        else:
            # small rows start larger, at about 1 MiB of input: per-call overhead dominates them
            start = 1 << int(np.log2(max(4, min(8192, (1 << 20) // row_bytes))))
            self.size, self.growing = min(start, self.cap), True
        self.throughput: dict[int, float] = {}
        self._runs, self._rows, self._seconds, self._misses = 0, 0, 0.0, 0
        resumed = _growth(model).get(key) if self.growing else None
        if resumed is not None:  # an earlier call too short to compare two sizes: go on from there
            self.size, throughput, self._misses, self._runs, self._rows, self._seconds = resumed
            self.throughput = dict(throughput)

    def next(self, remaining: int) -> int:
        return max(1, min(self.size, remaining))

    def record(self, rows: int, seconds: float) -> None:
        if not self.growing or rows < self.size:
            return
        self._runs += 1
        if self._runs == 1:  # untimed: allocations for the new shape
            return
        self._rows, self._seconds = self._rows + rows, self._seconds + seconds
        if self._runs <= _TIMED:
            return
        previous_best = max(self.throughput.values(), default=0.0)
        self.throughput[self.size] = self._rows / max(self._seconds, 1e-9)
        self._runs, self._rows, self._seconds = 0, 0, 0.0
        improved = self.throughput[self.size] >= _IMPROVES * previous_best
        self._misses = 0 if improved else self._misses + 1
        if self._misses <= _PATIENCE and self.size < self.cap:
            self.size = min(self.size * 2, self.cap)
            return
        self._settle()

    def finish(self) -> None:
        """At the end of a call: keep what growing found, if it compared two sizes at least.

        Otherwise the next call on the model goes on growing from where this one stopped, so
        that calls too short to measure alone (a few hundred rows of a text model) still
        settle after a few calls.
        """
        if self.growing and len(self.throughput) >= 2:
            self._settle()
        elif self.growing:
            _growth(self.model)[self.key] = (
                self.size, dict(self.throughput), self._misses, self._runs, self._rows, self._seconds
            )

    def _settle(self) -> None:
        best = max(self.throughput.values())
        self.size = max(size for size, value in self.throughput.items() if value >= _PLATEAU * best)
        self.growing = False
        self.model.tuned_batch_sizes[self.key] = self.size
        _growth(self.model).pop(self.key, None)
        remember(self.model, self.key, self.size)

    def halve(self) -> None:
        if self.size == 1:
            raise OutOfMemoryError("the model ran out of memory on a batch of one row")
        self.size = self.cap = max(1, self.size // 2)
        self.growing = False
        self.model.tuned_batch_sizes[self.key] = self.size
        remember(self.model, self.key, self.size)


def _halve(sizer: BatchSizer, error: MemoryError) -> None:
    """Halve the batch after ``error``; at one row, raise OutOfMemoryError chained to it."""
    try:
        sizer.halve()
    except OutOfMemoryError:
        if isinstance(error, OutOfMemoryError):
            raise
        raise OutOfMemoryError(
            f"out of memory on a batch of one row while building or running it ({type(error).__name__}: "
            f"{error or 'no details'})"
        ) from error


def _growth(model) -> dict:
    """Growth unfinished by earlier calls, per sizer key: the size, the throughput per size
    compared, the misses, and the runs, rows and seconds measured so far at the size."""
    return model.cache.batch_growth


def evaluate(
    model,
    feeds: Feeds,
    *,
    n: int,
    make_rows: Callable[[int, int], np.ndarray],
    owners: np.ndarray,
    reduce: Callable[[np.ndarray, np.ndarray], np.ndarray],
    output: str,
    batch_size=None,
    progress=None,
    desc: str = "evaluating",
) -> np.ndarray:
    """Run ``n`` rows through ``model`` in batches and concatenate the reduced outputs.

    Parameters
    ----------
    model : Model
    feeds : Feeds
    n : int
        Number of rows to evaluate.
    make_rows : callable
        ``make_rows(start, stop)`` returns rows ``start..stop`` of the explained input,
        batch first, built only when needed; or a dict of such rows that also perturbs fixed
        inputs (see :meth:`Feeds.batch`).
    owners : ndarray of shape (n,)
        The explained row each evaluated row belongs to.
    reduce : callable
        ``reduce(outputs, owners) -> ndarray`` applied to each batch's selected output
        (batch axis first) before it is kept. With several outputs, ``outputs`` is a list
        and ``reduce`` may return a tuple of arrays, each concatenated on its own.
    output : str or list of str
        The output to fetch, or several.
    batch_size : int or "auto", optional
        Overrides ``model.batch_size``.
    progress : bool, callable or None
        A callable is called ``progress(rows_done, n)`` after each batch, and no bar is shown
        (a data-set job moves its own bar with it). True forces a progress bar, False hides it,
        None shows it on runs longer than about
        two seconds when stderr is a terminal.

    Returns
    -------
    ndarray or tuple of ndarray
        The reduced batches, concatenated along axis 0.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    several = not isinstance(output, str)
    names = list(output) if several else [output]
    out_specs = [model.output_spec(name) for name in names]
    sizer = BatchSizer(model, (feeds.name, feeds.rows.shape[1:]), feeds.row_bytes(model, names), batch_size)
    batched = feeds.batched_names()
    report = progress if callable(progress) else None  # report(done, total) after each batch
    show = False if report is not None else (progress if progress is not None else sys.stderr.isatty())

    def build(start: int, stop: int):
        own = owners[start:stop]
        return own, feeds.batch(make_rows(start, stop), own)

    results, start, pending, producer = [], 0, None, None
    # One producer thread builds the next batch while the runtime, which releases the GIL,
    # runs the current one. It and the progress bar start only when needed: a call of one
    # small batch (a few digits, say) would otherwise spend more on them than on the model.
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(total=n, desc=desc, unit="row", delay=0 if progress else 2.0, leave=False)
        ) if show else None
        while start < n:
            try:
                if pending is not None and pending[0] == start:
                    _, stop, future = pending
                    own, batch = future.result()
                else:
                    stop = start + sizer.next(n - start)
                    own, batch = build(start, stop)
            except MemoryError as error:  # numpy could not build the batch: like the runtime's OOM
                _halve(sizer, error)
                pending = None
                continue
            pending = None
            if stop < n:
                ahead = stop + sizer.next(n - stop)
                if producer is None:
                    producer = stack.enter_context(ThreadPoolExecutor(max_workers=1))
                pending = (stop, ahead, producer.submit(build, stop, ahead))
            pad_to = model.static_batch or (sizer.size if model.fixed_shapes and not sizer.growing else None)
            began = time.perf_counter()
            try:
                outputs = _run_padded(model, batch, batched, names, pad_to)
            except MemoryError as error:  # OutOfMemoryError from ONNX Runtime, or a callable model's own
                _halve(sizer, error)
                pending = None  # built for the old size; rebuilt at the new one
                continue
            sizer.record(stop - start, time.perf_counter() - began)
            outputs = [np.moveaxis(value, spec.batch_axis, 0) if spec.batch_axis else value
                       for value, spec in zip(outputs, out_specs)]
            _check_rows(outputs, out_specs, stop - start)
            results.append(reduce(outputs if several else outputs[0], own))
            if bar is not None:
                bar.update(stop - start)
            if report is not None:
                report(stop, n)
            start = stop
    sizer.finish()
    if isinstance(results[0], tuple):
        return tuple(np.concatenate(parts, axis=0) for parts in zip(*results))
    return np.concatenate(results, axis=0)


#: the most input a run padded to a model's static batch may take
PAD_BYTES = 4 << 30


def _check_rows(outputs, specs, n_rows: int) -> None:
    """Each output has one row per input row (after moving its batch axis first): the rows are
    concatenated and explained one by one, so an output without them cannot be explained."""
    for value, spec in zip(outputs, specs):
        if np.ndim(value) == 0 or np.shape(value)[0] != n_rows:
            raise ModelExecutionError(
                f"output {spec.name!r}: the model returned shape {np.shape(value)} for {n_rows} input rows; "
                "expected one row of output per input row on its batch axis"
            )


def _run_padded(model, feeds: dict[str, np.ndarray], batched: set[str], outputs: list[str], size: int | None):
    """Run one batch whole, or in slices of ``size`` rows with the last one padded.

    Padding serves models stuck at a static batch size, and providers where a new batch
    shape is costly (``model.fixed_shapes``). Returns one array per name in ``outputs``.
    """
    if size is None:
        return model.run_batch(feeds, batched, outputs)
    n = len(feeds[next(iter(batched))])
    padded = size * sum(feeds[name][:1].nbytes for name in batched)
    if padded > PAD_BYTES:
        raise ModelExecutionError(
            f"model: its static batch of {size} rows would take {padded / 2**30:.3g} GiB of input per run, "
            f"over {PAD_BYTES >> 30} GiB; export it with a dynamic or smaller batch"
        )
    pieces = []
    for start in range(0, n, size):
        piece = {
            name: _pad(value[start : start + size], size) if name in batched else value
            for name, value in feeds.items()
        }
        pieces.append([value[: min(size, n - start)] for value in model.run_batch(piece, batched, outputs)])
    return [np.concatenate(parts, axis=0) for parts in zip(*pieces)]


def _pad(value: np.ndarray, size: int) -> np.ndarray:
    if value.shape[0] == size:
        return value
    return np.concatenate([value, np.repeat(value[-1:], size - value.shape[0], axis=0)], axis=0)
