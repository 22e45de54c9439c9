"""How every metric scores perturbed inputs: through the one batching loop, on the explained target."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..runtime.batching import Feeds, evaluate
from ..runtime.model import Model
from ..runtime.loading import load
from ..runtime.targets import Target, target_reducer

__all__ = ["Scorer"]


class Scorer:
    """Scores rows of an explanation's input on its model, for its target.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        The explained model (see :func:`agnostic_explain.load`).
    explanation : Explanation
        Gives the input rows (``data``), the input and output names, the per-row targets
        and the output transform used.
    fixed_inputs : dict, optional
        The model's other inputs, as given to ``explain``.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 4, 4)).explain(images[:2])
    >>> scorer = Scorer(DEFAULT_MODEL_PATH, explanation)
    >>> bool(np.allclose(scorer.score(2, lambda a, b: images[a:b], np.arange(2)), explanation.base_values))
    True
    """

    def __init__(self, model, explanation, *, fixed_inputs=None):
        self.model: Model = load(model)
        self.explanation = explanation
        self.feeds = Feeds.prepare(
            self.model, explanation.data, input=explanation.input_name, fixed_inputs=fixed_inputs, check_finite=False
        )
        self.output = self.model.output_spec(explanation.output_name).name
        self.output_transform = explanation.params.get("output_transform")
        if explanation.target is None:
            raise ParameterError(
                "explanation: its target was a callable, which an Explanation does not keep; "
                "metrics need class targets (or a one-value output)"
            )
        indices = np.asarray(explanation.target)
        self.target = Target(indices=indices.reshape(len(indices), -1).astype(np.int64))
        self.n_evals = 0

    @property
    def rows(self) -> np.ndarray:
        return self.feeds.rows

    def score(self, n: int, make_rows: Callable[[int, int], np.ndarray], owners: np.ndarray, *,
              desc: str = "metric", progress=None) -> np.ndarray:
        """Target scalars, shape (n,), of ``n`` rows built by ``make_rows(start, stop)``.

        ``owners[i]`` is the explained row that row ``i`` perturbs.
        """
        self.n_evals += n
        return evaluate(
            self.model, self.feeds, n=n, make_rows=make_rows, owners=np.asarray(owners),
            reduce=target_reducer(self.target, self.output_transform),
            output=self.output, progress=progress, desc=desc,
        )
