"""The metadata a converted model carries, read back by :func:`agnostic_explain.load`."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

__all__ = ["annotate", "finish", "read_metadata"]

#: keys written to ``metadata_props``; values are JSON except the framework name and version
KEYS = ("class_names", "feature_names", "preprocessing", "source_framework", "source_framework_version",
        "parity", "converter")


def annotate(
    proto: onnx.ModelProto, *, class_names=None, feature_names=None, preprocessing=None,
    framework=None, framework_version=None, parity=None,
) -> onnx.ModelProto:
    """A copy of ``proto`` with class and feature names, preprocessing, source and parity stored.

    Existing entries with the same keys are replaced; others are kept.

    Examples
    --------
    >>> from onnx import helper, TensorProto
    >>> graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])])
    >>> tagged = annotate(helper.make_model(graph), class_names=["cat", "dog"])
    >>> read_metadata(tagged)["class_names"]
    ['cat', 'dog']
    """
    from agnostic_explain import __version__

    values = {
        "class_names": _names(class_names),
        "feature_names": _names(feature_names),
        "preprocessing": preprocessing,
        "parity": parity.as_dict() if hasattr(parity, "as_dict") else parity,
        "converter": f"agnostic-explain {__version__}",
    }
    texts = {key: json.dumps(value) for key, value in values.items() if value is not None}
    if framework is not None:
        texts["source_framework"] = str(framework)
    if framework_version is not None:
        texts["source_framework_version"] = str(framework_version)
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    kept = [prop for prop in edited.metadata_props if prop.key not in texts]
    del edited.metadata_props[:]
    for prop in kept:
        edited.metadata_props.add(key=prop.key, value=prop.value)
    for key, text in texts.items():
        edited.metadata_props.add(key=key, value=text)
    return edited


def read_metadata(proto: onnx.ModelProto) -> dict:
    """The converter's metadata of ``proto``, JSON decoded."""
    found = {}
    for prop in proto.metadata_props:
        if prop.key in KEYS:
            try:
                found[prop.key] = json.loads(prop.value)
            except ValueError:
                found[prop.key] = prop.value
    return found


def finish(proto, *, feeds, expected, framework, framework_version, path=None, atol, rtol, model=None,
           class_names=None, feature_names=None, preprocessing=None) -> onnx.ModelProto:
    """Check parity, store the metadata, and write the model when ``path`` is given.

    Every ``from_*`` converter ends here. ``model`` is ``proto`` already loaded on the CPU, when
    the converter has one (one session per conversion).
    """
    from .parity import check_parity

    parity = check_parity(proto, feeds, expected, atol=atol, rtol=rtol, model=model)
    annotated = annotate(
        proto, class_names=class_names, feature_names=feature_names, preprocessing=preprocessing,
        framework=framework, framework_version=framework_version, parity=parity,
    )
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(annotated, str(target))
    return annotated


def _names(names):
    if names is None:
        return None
    return [str(name) for name in list(names)]
