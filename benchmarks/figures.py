"""``python -m benchmarks.figures``: RISE, LIME-image, Score-CAM and Occlusion on the same digit, side by side.

The figure shows each method's colour scale as the plots choose it: Occlusion's signed
attributions on a diverging map centred at zero, RISE's and Score-CAM's saliency on a
sequential map over their own range, LIME-image's superpixel weights as their signs say.
Seeds are fixed, so a rerun draws the same figure. Writes
``benchmarks/results/figures/methods-digit-<index>.png`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "figures"


def explain():
    """The four explanations of the embedded samples (ten digits), each explaining the predicted class."""
    import agnostic_explain as ae
    from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples

    x, _ = load_samples()
    model = ae.load(DEFAULT_MODEL_PATH, providers="cpu")
    return [
        ae.Occlusion(model, window=(1, 2, 2)).explain(x),
        ae.Rise(model, n_masks=2000, cells=4).explain(x, random_state=0),
        # 2x2 patches: quickshift finds a single superpixel in an 8x8 digit
        ae.LimeImage(model, segmentation=ae.masks.grid(x.shape[-2:], 2), num_samples=1000).explain(x, random_state=0),
        ae.ScoreCam(model).explain(x),
    ]


def main(argv=None) -> int:
    from agnostic_explain.plot import compare
    from agnostic_explain.plot.image import TOP_K

    parser = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=3, help="the sample row (digit) to explain")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    explanations = explain()
    figure = compare(explanations, args.index, ncols=len(explanations) + 1, top_k=TOP_K)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"methods-digit-{args.index}.png"
    figure.savefig(path, dpi=100, metadata={"Software": None})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
