"""The package's shape: no import cycles (imports inside functions included), declared layers
kept (lint-imports), a small package root, and graph edits that never import onnxruntime."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import agnostic_explain

ROOT = Path(agnostic_explain.__file__).parent


def _strongly_connected(nodes, edges) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_import_graph_has_no_cycles():
    graph = grimp.build_graph("agnostic_explain", include_external_packages=False)
    modules = sorted(graph.modules)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in modules}
    assert _strongly_connected(modules, edges) == []


def test_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(["a", "b", "c", "d"], edges) == [["a", "b", "c"]]


def test_the_package_root_holds_at_most_eight_modules():
    modules = sorted(path.name for path in ROOT.glob("*.py"))
    assert len(modules) <= 8, modules


def test_every_subpackage_says_what_it_is_for():
    for init in ROOT.glob("*/__init__.py"):
        text = init.read_text()
        assert text.lstrip().startswith('"""'), f"{init} has no docstring"


@pytest.mark.skipif(shutil.which("lint-imports") is None and not (Path(sys.executable).parent / "lint-imports").exists(),
                    reason="import-linter is not installed")
def test_the_declared_layers_are_kept():
    linter = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([linter], capture_output=True, text=True, cwd=ROOT.parent)
    assert result.returncode == 0, result.stdout[-3000:]


#: the package's public names before the layers were drawn; each must stay importable
FIRST_PUBLIC_NAMES = (
    "AblationCam", "Activations", "Background", "CallableModel", "Explainer", "Explanation", "FeatureAblation",
    "GlobalSurrogate", "KernelShap", "LatentAttribution", "LayerActivations", "LimeImage", "LimeTabular", "LimeText",
    "Model", "Occlusion", "OnnxModel", "PartialDependence", "PermutationImportance", "Rise", "ScoreCam",
    "ShapleySampling", "TensorSpec", "UnitAblation", "errors", "graph", "jobs", "latent_traversal", "load", "masks",
    "metrics", "partial_dependence", "report", "sensitivity_map", "summarize", "summary",
)


def test_every_earlier_public_name_is_still_there():
    import converters  # noqa: F401 - the converters stay a top-level package

    assert [name for name in FIRST_PUBLIC_NAMES if not hasattr(agnostic_explain, name)] == []
    assert set(FIRST_PUBLIC_NAMES) <= set(agnostic_explain.__all__)
    assert callable(agnostic_explain.report.write_report) and callable(agnostic_explain.summary.summarize_explanation)
