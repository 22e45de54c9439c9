"""One worker of a data-set job: its own model on one device, explaining whole chunks.

The local backend runs one per device in a thread; the Ray backend holds one per actor. A
worker reads its chunk's rows, explains them with the chunk's own seed, and writes the
chunk's files; the process that drives the job commits the record it returns.
"""

from __future__ import annotations

import os
import socket
import time

from ..errors import ParameterError
from .chunks import read_chunk
from .sources import ReadSettings
from .spec import build_explainer, chunk_rng
from .store import write_chunk

__all__ = ["ChunkWorker", "parse_device"]


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as ``(providers, device_id)``.

    >>> parse_device("cuda:1"), parse_device("cpu")
    (('cuda', 1), ('cpu', 0))
    """
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", 0
    kind, _, ordinal = text.partition(":")
    if kind in ("cuda", "gpu") and (not ordinal or ordinal.isdigit()):
        return "cuda", int(ordinal or 0)
    raise ParameterError(f"devices: expected 'cpu', 'cuda' or 'cuda:N' for each device, got {device!r}")


class ChunkWorker:
    """Explains chunks on one device; the model loads on the first chunk.

    Parameters
    ----------
    model : str, bytes or Model
        A path or serialized bytes (each worker loads its own session), or a loaded model
        (used as it is).
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    threads : int or None
        ONNX Runtime intra-op threads of this worker's session.
    spec : dict
        The normalised explainer spec.
    settings : ReadSettings
    out : str
        The output folder.
    entropy : int
        The job's seed; chunk ``k`` uses :func:`chunk_rng(entropy, k) <chunk_rng>`.
    on_error : "fail" or "skip"
    output : dict
        ``{"tabular": bool, "feature_names": list or None}``.
    batch_size : int or "auto"
    worker : int
        This worker's number among the job's, for the manifest.
    """

    def __init__(self, model, device, threads, spec, settings: ReadSettings, out, entropy, on_error, output,
                 batch_size="auto", worker=0):
        self.model = model
        self.device = device
        self.threads = threads
        self.spec = spec
        self.settings = settings
        self.out = str(out)
        self.entropy = entropy
        self.on_error = on_error
        self.output = output
        self.batch_size = batch_size
        self.worker = worker
        self._explainer = None

    def explainer(self):
        if self._explainer is None:
            from ..runtime import Model, load

            model = self.model
            if not isinstance(model, Model):
                providers, device_id = parse_device(self.device)
                model = load(model, providers=providers, device_id=device_id, threads=self.threads,
                             batch_size=self.batch_size)
            self._explainer = build_explainer(model, self.spec)
        return self._explainer

    def process(self, task, on_rows=None) -> dict:
        """Explain, write and describe one chunk: the record the manifest keeps for it.

        ``on_rows(k)``, when given, is told that about ``k`` more of the chunk's rows are done
        while the chunk runs, so that a progress bar moves within long chunks.
        """
        began = time.perf_counter()
        rows, slots, keys, skipped = read_chunk(task, self.settings, self.on_error)
        checks, n_evals, explain_seconds = {}, 0, 0.0
        if rows is not None:
            spec = self.spec
            explanation = self.explainer().explain(
                rows, target=spec["target"], output=spec["output"], input=spec["input"],
                output_transform=spec["output_transform"], progress=_share(task.stop - task.start, on_rows),
                random_state=chunk_rng(self.entropy, task.index),
            )
            checks = write_chunk(
                self.out, task.index, explanation, slots, keys,
                tabular=self.output["tabular"], feature_names=self.output.get("feature_names"),
            )
            n_evals, explain_seconds = int(explanation.n_evals), float(explanation.seconds)
        return {
            "index": task.index, "start": task.start, "stop": task.stop, "rows": int(len(slots)),
            "files": list(checks), "checks": checks, "skipped": skipped,
            "seconds": round(time.perf_counter() - began, 6),
            "explain_seconds": round(explain_seconds, 6), "n_evals": n_evals, "device": self.device,
            "worker": self.worker, "host": socket.gethostname(), "pid": os.getpid(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _share(n_rows: int, on_rows):
    """A ``progress`` callable that turns the model rows of each model run into the chunk's rows done."""
    if on_rows is None:
        return False
    told = [0]

    def report(done: int, total: int) -> None:
        reached = n_rows * done // max(total, 1)
        if reached > told[0]:
            on_rows(reached - told[0])
            told[0] = reached

    return report

