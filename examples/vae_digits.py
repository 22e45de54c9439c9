"""Explain a tiny VAE trained on scikit-learn's digits: its decoder, encoder and a discriminator.

Run ``python examples/vae_digits.py --out vae_out``. It trains a 64-16-4 VAE (seeded, a few
seconds on two CPU cores), exports encoder and decoder to ONNX with
:func:`converters.from_torch`, then

* attributes the decoded image of a few digits to the 4 latent dimensions
  (:class:`agnostic_explain.generative.LatentAttribution`, occlusion, target "distance"),
* draws a latent traversal grid (``traversal.png``),
* projects the encoder's latent means with PCA, coloured by digit (``encoder_pca.png``),
  reading them through :class:`agnostic_explain.LayerActivations`,
* explains a tiny discriminator's realness score with :class:`agnostic_explain.Occlusion`
  and :class:`agnostic_explain.Rise` (``discriminator.png``): the same explainers as for
  any classifier, since the score is one scalar per row (``target=None``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LATENT = 4


def _train(seed: int = 0, steps: int = 400):
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)

    encoder = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2 * LATENT))
    decoder = torch.nn.Sequential(torch.nn.Linear(LATENT, 16), torch.nn.Tanh(), torch.nn.Linear(16, 64),
                                  torch.nn.Sigmoid())
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-2)
    for _ in range(steps):
        mean, log_var = encoder(x).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        recon = decoder(z)
        reconstruction = torch.nn.functional.binary_cross_entropy(recon, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + log_var - mean**2 - log_var.exp()) / len(x)
        optimizer.zero_grad()
        (reconstruction + kl).backward()
        optimizer.step()

    # The realness score: real digits against decodings of prior samples.
    discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.Tanh(),
                                        torch.nn.Linear(16, 1))
    with torch.no_grad():
        fake = decoder(torch.randn(len(x), LATENT))
    images = torch.cat([x, fake]).reshape(-1, 1, 8, 8)
    labels = torch.cat([torch.ones(len(x), 1), torch.zeros(len(x), 1)])
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-2)
    for _ in range(200):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(discriminator(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    class Mean(torch.nn.Module):  # the encoder exported as x -> latent mean
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, rows):
            return self.encoder(rows)[:, :LATENT]

    return Mean(), decoder, discriminator, digits.data.astype(np.float32) / 16.0, digits.target


def main(out_dir, *, seed: int = 0) -> dict:
    """Train, export, explain; write PNGs and ``results.json`` under ``out_dir``.

    Returns
    -------
    dict
        ``decoder``, ``encoder``, ``discriminator`` (ONNX ModelProtos), ``latents`` of shape
        (n, 4), ``attribution`` (an Explanation over the latent dimensions), ``means`` (the
        encoder's latent means of all digits), ``discriminator_occlusion`` and
        ``discriminator_rise`` (Explanations), and the written ``paths``.
    """
    import agnostic_explain as ae
    from agnostic_explain.inspection.generative import LatentAttribution
    from agnostic_explain.plot.generative import traversal_grid
    from converters import from_torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder_module, decoder_module, discriminator_module, x, y = _train(seed)
    encoder = from_torch(encoder_module, x[:8])
    decoder = from_torch(decoder_module, np.zeros((2, LATENT), np.float32))
    discriminator = from_torch(discriminator_module, x[:8].reshape(-1, 1, 8, 8))

    # The encoder's latent means are its output; LayerActivations also records the hidden layer.
    activations = ae.LayerActivations(encoder).activations(x)
    means = activations.outputs
    picked = np.array([int(np.flatnonzero(y == digit)[0]) for digit in (0, 3, 7)])
    latents = means[picked]
    attribution = LatentAttribution(decoder, method="occlusion", target="distance").explain(latents)

    paths = {"traversal": out / "traversal.png", "encoder_pca": out / "encoder_pca.png",
             "discriminator": out / "discriminator.png"}
    figure = traversal_grid(decoder, latents[0], list(range(LATENT)), np.linspace(-2.5, 2.5, 7),
                            image_shape=(8, 8))
    figure.savefig(paths["traversal"], dpi=90)
    _pca_plot(means, y).savefig(paths["encoder_pca"], dpi=90)

    real = x[picked].reshape(-1, 1, 8, 8)
    occlusion = ae.Occlusion(discriminator, window=(1, 2, 2)).explain(real, target=None)
    rise = ae.Rise(discriminator, n_masks=500, cells=4).explain(real, target=None, random_state=seed)
    _discriminator_plot(real, occlusion, rise).savefig(paths["discriminator"], dpi=90)

    summary = {"digits": y[picked].tolist(), "latent_effect": attribution.extras["effect"].round(4).tolist(),
               "realness": occlusion.base_values.round(3).tolist()}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    return {"decoder": decoder, "encoder": encoder, "discriminator": discriminator, "latents": latents,
            "attribution": attribution, "means": means, "labels": y, "discriminator_occlusion": occlusion,
            "discriminator_rise": rise, "paths": paths, "summary": summary}


def _pca_plot(means: np.ndarray, labels: np.ndarray):
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    projected = PCA(n_components=2).fit_transform(means)
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    points = ax.scatter(projected[:, 0], projected[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    figure.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("Encoder latent means (PCA)")
    return figure


def _discriminator_plot(images, occlusion, rise):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 2.4 * len(images)), layout="constrained")
    axes = figure.subplots(len(images), 3, squeeze=False)
    for row, image in enumerate(images):
        for ax, data, name in zip(axes[row], (image[0], occlusion.values[row, 0], rise.values[row, 0]),
                                  ("digit", "occlusion", "RISE")):
            # Occlusion is signed (centred colours); RISE is a mean score, positive (sequential).
            limit = float(np.abs(data).max()) or 1.0
            scale = {"vmin": -limit, "vmax": limit} if name == "occlusion" else {}
            shown = ax.imshow(data, cmap={"digit": "gray", "occlusion": "RdBu_r"}.get(name, "viridis"), **scale)
            if name != "digit":
                figure.colorbar(shown, ax=ax, shrink=0.8)
            ax.set_title(f"{name}" + (f" (realness {occlusion.base_values[row]:.2f})" if name == "digit" else ""),
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    return figure


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="vae_digits_out", help="folder for the PNGs and results.json")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    results = main(arguments.out, seed=arguments.seed)
    print(json.dumps(results["summary"], indent=2))
