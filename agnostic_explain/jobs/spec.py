"""What a data-set job is: the explainer spec, its fingerprint, and the seed of each chunk.

A job is fully described by a JSON-able dict (the *job spec*): the model's hash, the data's
description, the explainer and its parameters, the chunk size and the seed. The output folder
keeps it in its manifest; a rerun with an equal spec resumes, any other is refused with the
fields that differ.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ..errors import JobMismatchError, ParameterError
from ..explainers.registry import build, explainer_class, method_names

__all__ = ["build_explainer", "chunk_rng", "explainer_class", "method_names", "normalize_spec", "spec_differences"]

#: keys an explainer spec may hold, and their defaults
SPEC_KEYS = {
    "method": None, "params": {}, "target": "predicted", "output": None, "input": None, "output_transform": None,
}
def normalize_spec(explainer_spec) -> dict:
    """The explainer spec with every key, the method's canonical name, and params sorted.

    Parameters
    ----------
    explainer_spec : str or dict
        A method name, or ``{"method": ..., "params": {...}, "target": "predicted" or int,
        "output": name or index, "input": name, "output_transform": None, "softmax" or "sigmoid"}``.
        Params are the explainer's constructor arguments; arrays are allowed (they are hashed).

    Returns
    -------
    dict

    Examples
    --------
    >>> normalize_spec({"method": "Occlusion", "params": {"window": (1, 2, 2)}})["method"]
    'occlusion'
    """
    if isinstance(explainer_spec, str):
        explainer_spec = {"method": explainer_spec}
    if not isinstance(explainer_spec, dict) or "method" not in explainer_spec:
        raise ParameterError(
            f"explainer_spec must be a method name or a dict with a 'method' key, got {explainer_spec!r}"
        )
    unknown = sorted(set(explainer_spec) - set(SPEC_KEYS))
    if unknown:
        raise ParameterError(f"explainer_spec: unknown keys {unknown}; expected some of {sorted(SPEC_KEYS)}")
    spec = {**SPEC_KEYS, **explainer_spec}
    spec["method"] = explainer_class(spec["method"], parameter="explainer_spec['method']").method
    params = spec["params"] if spec["params"] is not None else {}
    if not isinstance(params, dict):
        raise ParameterError(f"explainer_spec['params'] must be a dict of constructor arguments, got {params!r}")
    if "model" in params:
        raise ParameterError("explainer_spec['params']: 'model' is the job's own model; leave it out")
    spec["params"] = dict(sorted(params.items()))
    target = spec["target"]
    if not (target == "predicted" or (isinstance(target, (int, np.integer)) and not isinstance(target, bool))):
        raise ParameterError(f"explainer_spec['target'] must be 'predicted' or a class index, got {target!r}")
    spec["target"] = target if target == "predicted" else int(target)
    return spec


def build_explainer(model, spec: dict):
    """An explainer of ``model`` built from a normalised spec; a bad parameter names the method."""
    return build(spec["method"], model, spec["params"], parameter="explainer_spec['params']")


def chunk_rng(entropy: int, index: int) -> np.random.Generator:
    """The generator of chunk ``index``: the same for the same job seed, whatever ran before.

    >>> float(chunk_rng(7, 3).random()) == float(chunk_rng(7, 3).random()) != float(chunk_rng(7, 4).random())
    True
    """
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))


def seed_entropy(random_state) -> int:
    """The job's seed as a non-negative int; None draws one (it is kept in the manifest)."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state)
    raise ParameterError(
        f"random_state must be a non-negative int or None (a job reseeds each chunk from it), got {random_state!r}"
    )


def jsonable(value):
    """``value`` with arrays replaced by a description and their hash, tuples by lists."""
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
        return f"array {value.dtype} {list(value.shape)} sha256:{digest}"
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"{type(value).__name__} {value!r}"


def fingerprint(job_spec: dict) -> str:
    """sha256 of the spec's canonical JSON."""
    return hashlib.sha256(json.dumps(job_spec, sort_keys=True).encode()).hexdigest()


def spec_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two job specs differ, with both values.

    >>> spec_differences({"chunk_size": 64, "explainer": {"method": "rise"}},
    ...                  {"chunk_size": 32, "explainer": {"method": "rise"}})
    ['chunk_size: 64 in the folder, 32 now']
    """
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += spec_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {_short(a)} in the folder, {_short(b)} now")
    return found


def check_same_job(out, old: dict, new: dict) -> None:
    """Raise :class:`JobMismatchError` naming the differing fields when ``old != new``."""
    differences = spec_differences(old, new)
    if differences:
        raise JobMismatchError(
            f"out: {str(out)!r} holds the results of another job ({'; '.join(differences)}); "
            f"use another folder, or resume=False (--no-resume) to start it afresh"
        )


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
