"""Explaining whole data sets: resumable chunked jobs on one machine's devices, or on Ray.

>>> import tempfile
>>> from agnostic_explain import jobs
>>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
>>> images, _ = load_samples()
>>> spec = {"method": "rise", "params": {"n_masks": 50, "cells": 4}}
>>> with tempfile.TemporaryDirectory() as out:
...     first = jobs.explain_dataset(DEFAULT_MODEL_PATH, images, spec, out=out, chunk_size=4, random_state=0,
...                                  devices=["cpu"], progress=False)
...     again = jobs.explain_dataset(DEFAULT_MODEL_PATH, images, spec, out=out, chunk_size=4, random_state=0,
...                                  devices=["cpu"], progress=False)
...     results = jobs.load_results(out)
>>> first.chunks_run, again.chunks_run, again.chunks_resumed, results.values.shape
(3, 0, 3, (10, 1, 8, 8))
"""

from .dataset import JobSummary, explain_dataset
from .verify import Verification, verify_results
from .store import JobResults, load_results

__all__ = ["JobResults", "JobSummary", "Verification", "explain_dataset", "load_results", "verify_results"]
