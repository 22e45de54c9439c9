"""Issue 18: Explanation.load on truncated, garbage and tampered files gives one clear ParameterError."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from agnostic_explain import Explanation
from agnostic_explain.errors import ParameterError


@pytest.fixture
def saved(tmp_path):
    explanation = Explanation(
        values=np.arange(12, dtype=np.float32).reshape(3, 4), base_values=np.ones(3), data=np.zeros((3, 4), np.float32),
        target=np.array([0, 1, 2]), method="occlusion", params={"window": [1]}, n_evals=15, seconds=0.5,
        feature_names=("a", "b", "c", "d"), extras={"group_values": np.ones((3, 2)), "note": "kept"},
    )
    return explanation.save(tmp_path / "good.npz")


def members(path) -> dict:
    """The archive's members as raw .npy bytes."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=allow_pickle)
    return buffer.getvalue()


def meta_of(path) -> dict:
    return json.loads(str(np.lib.format.read_array(io.BytesIO(members(path)["meta.npy"]))))


def write(path, items: dict, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in items.items():
            archive.writestr(name, data)
    return path


def with_meta(saved, change):
    meta = meta_of(saved)
    change(meta)
    items = members(saved)
    items["meta.npy"] = npy(np.array(json.dumps(meta)))
    return write(saved.with_name("tampered.npz"), items)


def with_array(saved, name, array):
    items = members(saved)
    if array is None:
        items.pop(f"{name}.npy")
    else:
        items[f"{name}.npy"] = array if isinstance(array, bytes) else npy(array, allow_pickle=True)
    return write(saved.with_name("tampered.npz"), items)


def huge_header(saved):
    """A 'values' member whose header claims 10**12 floats while it holds twelve."""
    data = npy(np.arange(12, dtype=np.float32).reshape(3, 4))
    header = data.replace(b"(3, 4)", b"(1000000000000, 4)")  # the header grows; numpy pads it to 64 bytes
    return with_array(saved, "values", header)


def rewrite(saved, data: bytes):
    path = saved.with_name("t.npz")
    path.write_bytes(data)
    return path


def flipped(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path = saved.with_name("tampered.npz")
    path.write_bytes(bytes(data))
    return path


TAMPERINGS = {
    "truncated": (lambda p: rewrite(p, p.read_bytes()[: p.stat().st_size // 2]), r"BadZipFile|EOFError|Error"),
    "empty": (lambda p: rewrite(p, b""), r"BadZipFile"),
    "garbage": (lambda p: rewrite(p, b"\x00garbage" * 100), r"BadZipFile"),
    "flipped byte": (flipped, r"."),
    "missing file": (lambda p: p.with_name("absent.npz"), r"no such file"),
    "no meta": (lambda p: with_array(p, "meta", None), r"\['meta'\] are missing"),
    "no data": (lambda p: with_array(p, "data", None), r"\['data'\] are missing"),
    "meta not json": (lambda p: with_array(p, "meta", np.array("{not json")), r"JSONDecodeError"),
    "meta a list": (lambda p: with_array(p, "meta", np.array("[1, 2]")), r"'meta' holds list"),
    "meta two strings": (lambda p: with_array(p, "meta", np.array(["{}", "{}"])), r"'meta' has shape \(2,\)"),
    "wrong format": (lambda p: with_meta(p, lambda m: m.update(format="other/1")), r"not an agnostic-explain explanation: 'meta' names the format 'other/1'"),
    "unknown meta field": (lambda p: with_meta(p, lambda m: m.update(evil=1)), r"unknown fields \['evil'\]"),
    "n_evals a string": (lambda p: with_meta(p, lambda m: m.update(n_evals="12")), r"'n_evals' is '12'; expected int"),
    "n_evals a bool": (lambda p: with_meta(p, lambda m: m.update(n_evals=True)), r"'n_evals' is True"),
    "names not strings": (lambda p: with_meta(p, lambda m: m.update(feature_names=[1, 2])), r"not strings"),
    "has_target lies": (lambda p: with_meta(p, lambda m: m.update(has_target=False)), r"has_target=False"),
    "object values": (lambda p: with_array(p, "values", np.array([{"a": 1}, None, 3], dtype=object)),
                      r"'values' has dtype object"),
    "bytes values": (lambda p: with_array(p, "values", np.array([b"ab", b"cd", b"ef"])), r"'values' has dtype \|S2"),
    "text values": (lambda p: with_array(p, "values", np.array(["a", "b", "c"])), r"'values' has dtype <U1"),
    "complex values": (lambda p: with_array(p, "values", np.ones((3, 4), np.complex64)), r"'values' has dtype complex64"),
    "structured values": (lambda p: with_array(p, "values", np.zeros(3, dtype=[("a", "f4")])), r"only plain"),
    "0-d values": (lambda p: with_array(p, "values", np.float32(1)), r"'base_values' has shape \(3,\); expected \(\)"
                   r"|'values' has shape \(\)"),
    "base_values too short": (lambda p: with_array(p, "base_values", np.ones(2)), r"'base_values' has shape \(2,\)"),
    "data of other rows": (lambda p: with_array(p, "data", np.zeros((5, 4))), r"'data' has shape \(5, 4\)"),
    "float target": (lambda p: with_array(p, "target", np.ones(3)), r"'target' has dtype float64"),
    "extra member": (lambda p: write(p.with_name("t.npz"), {**members(p), "evil.npy": npy(np.ones(2))}),
                     r"unexpected array 'evil'"),
    "not an npy member": (lambda p: write(p.with_name("t.npz"), {**members(p), "notes.txt": b"hi"}),
                          r"unexpected member 'notes.txt'"),
    "huge header": (huge_header, r"declares shape \(1000000000000, 4\)"),
    "short data": (lambda p: with_array(p, "values", npy(np.ones((3, 4), np.float32))[:-8]), r"holds \d+ bytes"),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_a_tampered_file_gives_one_clear_parameter_error(tampering, saved):
    make, reason = TAMPERINGS[tampering]
    path = make(saved)
    with pytest.raises(ParameterError, match=r"is not an explanation saved by Explanation\.save") as raised:
        Explanation.load(path)
    assert raised.match(reason)
    assert str(path) in str(raised.value)


def test_a_path_of_another_type_is_refused():
    with pytest.raises(ParameterError, match=r"path must be a str, an os\.PathLike or a binary file, got int"):
        Explanation.load(800)


def test_an_untampered_file_still_loads_whole(saved):
    loaded = Explanation.load(saved)
    assert loaded.values.dtype == np.float32 and loaded.values.shape == (3, 4)
    assert loaded.target.tolist() == [0, 1, 2] and loaded.feature_names == ("a", "b", "c", "d")
    assert loaded.extras["note"] == "kept" and loaded.extras["group_values"].shape == (3, 2)
    assert loaded.n_evals == 15 and loaded.seconds == 0.5 and loaded.params == {"window": [1]}


def test_a_file_without_target_and_with_text_data_loads(tmp_path):
    explanation = Explanation(values=np.ones((2, 3), np.float32), base_values=np.zeros(2),
                              data=np.array([["a", "b", "c"], ["d", "e", "f"]]), target=None, method="lime_text")
    loaded = Explanation.load(explanation.save(tmp_path / "text"))
    assert loaded.target is None and loaded.data.tolist() == [["a", "b", "c"], ["d", "e", "f"]]
