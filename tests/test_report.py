"""The plain-language summary and the HTML report: numbers, model cards, figures, escaping,
self-containment, and the report opened in a real headless browser when one is installed."""

from __future__ import annotations

import base64
import doctest
import html
import importlib
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import build_linear
from PIL import Image

import agnostic_explain as ae
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import ParameterError
from agnostic_explain.explanation import Explanation
from agnostic_explain.report import write_report
from agnostic_explain.report.summary import quadrant_shares, summarize_explanation

PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
MALICIOUS = "<script>alert(1)</script>"
FEATURES = ("sepal length", "sepal width", "petal length", "petal width", "age", "height", "weight", "score")


def image_explanation(values, *, label_names=("tabby", "Egyptian cat"), score=0.78, **kwargs) -> Explanation:
    """A hand-made explanation of one (1, H, W) image row explaining class 1."""
    values = np.asarray(values, dtype=np.float64)[None, None]
    fields = dict(
        values=values, base_values=np.array([score]), data=np.zeros_like(values), target=np.array([1]),
        method="occlusion", params={"window": [1, 2, 2], "output_transform": "softmax"}, n_evals=17, seconds=0.25,
        label_names=label_names, preprocessing={"layout": "nchw"},
    )
    return Explanation(**{**fields, **kwargs})


def pngs(page: str) -> list[bytes]:
    return [base64.b64decode(text) for text in PNG_URI.findall(page)]


@pytest.fixture(scope="module")
def digits():
    """Occlusion and Ablation-CAM on the same two digits, and the loaded demo model."""
    images, _ = load_samples()
    model = ae.load(DEFAULT_MODEL_PATH, providers="cpu")
    occlusion = ae.Occlusion(model, window=(1, 2, 2)).explain(images[[3, 7]], output_transform="softmax")
    cam = ae.AblationCam(model).explain(images[[3, 7]])
    return model, occlusion, cam


@pytest.fixture(scope="module")
def digits_report(digits, tmp_path_factory) -> Path:
    model, occlusion, cam = digits
    return write_report([occlusion, cam], tmp_path_factory.mktemp("digits") / "digits.html", model=model, title="Two digits")


@pytest.fixture(scope="module")
def tabular():
    """Occlusion (window 1, baseline 0) of y = x @ W + b: attribution j is x_j * W[j, target]."""
    metadata = {"feature_names": json.dumps(FEATURES), "class_names": json.dumps(["cat", "dog", "eel"]),
                "source_framework": "scikit-learn", "source_framework_version": "1.5.2",
                "parity": json.dumps({"max_abs": 2.5e-7, "max_rel": 1e-6, "n_rows": 20})}
    case = build_linear(n_features=len(FEATURES), metadata=metadata, seed=3)
    model = ae.load(case.proto, providers="cpu")
    x = np.random.default_rng(0).normal(size=(6, len(FEATURES))).astype(np.float32)
    explanation = ae.Occlusion(model, window=(1,)).explain(x, target=2)
    return model, case, x, explanation


# -- summary: images ------------------------------------------------------------------------------
def test_image_summary_names_the_quadrant_holding_all_positive_attribution():
    values = np.full((6, 8), -0.05)
    values[:3, :4] = np.random.default_rng(1).uniform(0.1, 1.0, size=(3, 4))
    text = summarize_explanation(image_explanation(values))
    positive = np.clip(values, 0, None)
    share = positive[:3, :4].sum() / positive.sum()  # the upper-left quarter, by hand
    assert text.startswith("The model predicts 'Egyptian cat' (p = 0.78).")
    assert f"{100 * share:.0f}% of the positive attribution lies in the upper-left quarter of the image" in text
    assert "100% of the positive attribution lies in the upper-left quarter" in text
    k = math.ceil(0.1 * values.size)
    top = np.sort(positive.ravel())[::-1][:k].sum() / positive.sum()
    assert f"The strongest 10% of pixels ({k} of {values.size}) hold {100 * top:.0f}% of the positive attribution" in text
    assert f"negative ones to {-0.05 * (48 - 12):.4g}" in text
    assert text.endswith("Computed with occlusion (window [1, 2, 2]): 17 model evaluations for 1 row in 0.250 s.")


def test_image_summary_splits_odd_middles_and_finds_the_centre():
    centre = np.zeros((5, 5))
    centre[2, 2] = 1.0  # the middle pixel: a quarter in each quadrant, all in the central box
    assert quadrant_shares(centre) == [0.25] * 4
    assert "100% of the positive attribution lies in the central quarter" in summarize_explanation(image_explanation(centre))
    split = np.zeros((4, 4))
    split[3, 3], split[0, 0] = 3.0, 2.0
    text = summarize_explanation(image_explanation(split, score=0.4))
    assert "60% of the positive attribution lies in the lower-right quarter" in text
    assert text.startswith("The explained class is 'Egyptian cat' (p = 0.40).")  # not above 1/2: not "predicts"
    spread = np.ones((4, 4))
    assert "spread over the image: upper-left 25%, upper-right 25%, lower-left 25%, lower-right 25%" in (
        summarize_explanation(image_explanation(spread)))
    assert "No pixel has a positive attribution" in summarize_explanation(image_explanation(-spread))


def test_summary_of_a_layer_method_and_of_a_raw_logit(digits):
    _, _, cam = digits
    text = summarize_explanation(cam, 1)
    assert text.startswith(f"The explained class is '7' (logit {cam.base_values[1]:.4g}).")
    assert f"layer '{cam.params['layer']}' (chosen automatically)" in text
    assert f"{cam.n_evals} model evaluations for 2 rows" in text
    assert summarize_explanation(cam, 1) == text  # deterministic
    for causal in ("cause", "because", "due to", "leads to", "makes the model"):
        assert causal not in text.lower()


# -- summary: features and tokens ------------------------------------------------------------------
def test_tabular_summary_lists_the_five_largest_features_in_order_with_their_share(tabular):
    _, case, x, explanation = tabular
    for row in range(len(x)):
        expected = x[row].astype(np.float64) * case.W[:, 2]  # occlusion with baseline 0 of a linear model
        order = np.argsort(-np.abs(expected))[:5]
        text = summarize_explanation(explanation, row)
        positions = [text.index(f"{FEATURES[j]} = {float(x[row, j]):.4g} ({expected[j]:+.3g})") for j in order]
        assert positions == sorted(positions)
        share = np.abs(expected[order]).sum() / np.abs(expected).sum()
        assert f"together they hold {100 * share:.0f}% of the total absolute attribution over 8 features" in text
        assert text.startswith("The explained class is 'eel' (logit")


def test_tabular_summary_checks_additivity_against_the_expected_value():
    values = np.array([[0.5, -0.2]])
    row = Explanation(values=values, base_values=np.array([1.3]), data=np.array([[2.0, 7.0]]), target=np.array([0]),
                      method="kernel_shap", extras={"expected_value": np.array([1.0])}, feature_names=("a", "b"))
    text = summarize_explanation(row)
    assert "All 2 features, by absolute attribution: a = 2 (+0.5), b = 7 (-0.2)." in text
    assert "From the expected value 1 over the background, the attributions (sum +0.3) add up to the score 1.3." in text
    off = Explanation(**{**row.__dict__, "base_values": np.array([2.0])})
    assert "add up" not in summarize_explanation(off)  # never claimed when the numbers disagree


def test_text_summary_names_the_strongest_tokens():
    explanation = Explanation(
        values=np.array([[0.1, -0.9, 0.5, 0.0]]), base_values=np.array([0.2]), data=np.array([[4, 9, 2, 0]]),
        target=np.array([0]), method="lime_text", extras={"tokens": np.array([["the", "not", "good", "<pad>"]])},
    )
    text = summarize_explanation(explanation)
    assert text.startswith("The explained output is column 0 (score 0.2).")  # no class names: no "class", no "logit"
    assert ("The 3 tokens with the largest absolute attributions are 'not' at position 1 (-0.9), "
            "'good' at position 2 (+0.5), 'the' at position 0 (+0.1); together they hold 100%") in text


# -- report -----------------------------------------------------------------------------------------
def test_report_holds_model_cards_one_png_per_plot_and_summaries(digits, digits_report):
    _, occlusion, cam = digits
    page = digits_report.read_text(encoding="utf-8")
    assert digits_report.name == "digits.html"
    assert page.count("<section>") == 2  # the model, and one group: both explain the same rows
    for text in ("<title>Two digits</title>", "(batch, 1, 8, 8)", "(batch, 10)", "image: data (2, 1, 8, 8) float32",
                 "logits", "CPUExecutionProvider", f"<td>{occlusion.n_evals}</td>", f"<td>{cam.n_evals}</td>",
                 "10: 0, 1, 2, 3, 4, 5, ... (10 in all)", html.escape(json.dumps(cam.params, sort_keys=True)),
                 html.escape(summarize_explanation(occlusion, 1)), html.escape(summarize_explanation(cam, 0)),
                 f"Generated by agnostic-explain {ae.__version__}"):
        assert text in page, text
    images = pngs(page)
    assert len(images) == 2  # one comparison figure per row
    for data in images:
        with Image.open(io.BytesIO(data)) as png:
            png.verify()
            assert png.format == "PNG" and png.width > 300


def test_report_of_tabular_rows_and_the_model_source(tmp_path, tabular):
    model, _, _, explanation = tabular
    page = write_report(explanation, tmp_path / "rows.html", model=model, max_rows=5).read_text(encoding="utf-8")
    # a beeswarm over the 6 rows, then a bar chart and a waterfall for each of the first 4
    assert len(pngs(page)) == 1 + 2 * 4
    for text in ("scikit-learn 1.5.2", "&quot;max_abs&quot;: 2.5e-07", "8: sepal length, sepal width, petal length",
                 "x: data (6, 8) float32", "... and 1 more row(s), not shown."):
        assert text in page, text
    assert page.count("<h3>Row ") == 5


def test_several_explanations_and_kinds_in_one_report(tmp_path, digits, tabular):
    _, occlusion, cam = digits
    text_row = Explanation(values=np.array([[0.3, -0.6]]), base_values=np.array([0.5]), data=np.array([[5, 6]]),
                           target=np.array([1]), method="lime_text", extras={"tokens": np.array([["fine", "not"]])})
    page = write_report([occlusion, tabular[3][:1], cam[:1], text_row], tmp_path / "all.html").read_text(encoding="utf-8")
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == ["1. occlusion on 2 images", "2. occlusion on 1 tabular row", "3. ablation_cam on 1 image",
                        "4. lime_text on 1 token sequence"]
    assert "<title>Explanation report: occlusion, ablation_cam, lime_text</title>" in page
    assert html.escape("'not' at position 1 (-0.6)") in page and "&lt;span" not in page and "<span title=" in page
    assert len(pngs(page)) == 2 + 2 + 1


def test_every_user_string_is_escaped(tmp_path):
    values = np.zeros((8, 8))
    values[:2, :2] = 1.0
    explanation = image_explanation(values, label_names=("cat", MALICIOUS), input_name='"><img src=x onerror=alert(2)>',
                                     params={"note": MALICIOUS, "output_transform": "softmax"})
    page = write_report(explanation, tmp_path / "evil.html", title=f"Report {MALICIOUS}").read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert f"<title>Report {html.escape(MALICIOUS)}</title>" in page
    assert html.escape(f"The model predicts '{MALICIOUS}' (p = 0.78).") in page  # the class name, escaped
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page


def test_report_is_self_contained(digits_report):
    assert_self_contained(digits_report.read_text(encoding="utf-8"))


def assert_self_contained(page: str) -> None:
    """No address outside the page: no URLs, scripts, stylesheets, imports or non-data url()s."""
    lowered = page.lower()
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "//cdn", "<iframe", "<object"):
        assert forbidden not in lowered, forbidden
    assert all(target.startswith("data:") for target in re.findall(r"url\(\s*['\"]?([^'\")]*)", lowered))
    assert all(target.startswith("data:image/png;base64,") for target in re.findall(r'\b(?:src|href)="([^"]*)"', page))


def test_report_refuses_bad_arguments(tmp_path, digits):
    with pytest.raises(ParameterError, match="explanations"):
        write_report([], tmp_path / "none.html")
    with pytest.raises(ParameterError, match="explanations"):
        write_report([np.zeros(3)], tmp_path / "none.html")
    with pytest.raises(ParameterError, match="max_rows"):
        write_report(digits[1], tmp_path / "none.html", max_rows=0)


@pytest.mark.parametrize("module", ["agnostic_explain.report.summary", "agnostic_explain.report.html"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- a real browser ---------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium")


def open_in_chromium(page: Path, folder: Path) -> tuple[str, list[str], list[str]]:
    """Load ``page`` in headless Chromium: (the DOM after load, console lines, URLs the page requested).

    Flags (found by experiment on Chromium 150, Debian):
    ``--headless=new --no-sandbox --disable-gpu`` run it as root without a display;
    ``--dump-dom`` prints the DOM once the page has loaded and exits; a fresh
    ``--user-data-dir`` keeps runs independent; ``--host-resolver-rules="MAP * ~NOTFOUND"``
    makes every host name fail to resolve, so that nothing can leave the machine;
    ``--enable-logging=stderr`` prints every console message of the page (whatever its level)
    as ``INFO:CONSOLE:<line>] "<message>", source: <url>``; ``--log-net-log`` writes a JSON log
    of every network request. The browser itself fetches in the background (network time,
    accounts, spelling dictionaries); its requests carry ``initiator: "not an origin"``, while
    a request the page makes carries the page's origin (``"null"`` for a file).
    """
    netlog = folder / "netlog.json"
    command = [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={folder / 'profile'}", f"--log-net-log={netlog}",
        "--dump-dom", page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if re.search(r":CONSOLE[:(]\d+", line)]
    text = netlog.read_text(encoding="utf-8")
    try:
        log = json.loads(text)
    except ValueError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    starts = [event.get("params", {}) for event in log["events"] if kinds.get(event["type"]) == "URL_REQUEST_START_JOB"]
    requested = [params["url"] for params in starts if params.get("initiator", "not an origin") != "not an origin"]
    return done.stdout, console, requested


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_sees_the_report_whole_with_no_console_errors_and_no_requests(tmp_path, digits_report):
    # The detector first proves it can fail: a page that logs an error and fetches from the web.
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><head><title>control</title></head><body>'
                       '<img src="https://example.com/x.png"><script>console.error("control error")</script>'
                       "</body></html>", encoding="utf-8")
    _, console, requested = open_in_chromium(control, tmp_path / "control")
    assert any("control error" in line for line in console)
    assert requested == ["https://example.com/x.png"]

    page = digits_report.read_text(encoding="utf-8")
    dom, console, requested = open_in_chromium(digits_report, tmp_path / "report")
    assert console == [] and requested == []
    assert "<title>Two digits</title>" in dom
    assert PNG_URI.findall(dom) == PNG_URI.findall(page) and len(PNG_URI.findall(dom)) == 2


def test_report_draws_one_beeswarm_per_predicted_class(tmp_path, tabular):
    model, _, _, _ = tabular
    x = np.random.default_rng(4).normal(size=(30, len(FEATURES))).astype(np.float32)
    explanation = ae.Occlusion(model, window=(1,)).explain(x)  # target="predicted": mixed classes
    counts = np.bincount(explanation.target, minlength=3)
    assert (counts > 0).sum() > 1
    page = write_report(explanation, tmp_path / "mixed.html", max_rows=1).read_text(encoding="utf-8")
    swarms = re.findall(r'alt="occlusion: attributions over (\d+) rows, class &#x27;(\w+)&#x27;"', page)
    drawn = sorted(((int(k), name) for k, name in swarms), reverse=True)
    assert drawn == sorted(((int(n), c) for n, c in zip(counts, ("cat", "dog", "eel")) if n > 4), reverse=True)
    assert len(pngs(page)) == len(drawn) + 2  # the beeswarms, then a bar chart and a waterfall for row 0


# -- summary: what a sum of attributions means ------------------------------------------------------
def test_summary_states_no_completeness_for_occlusion():
    values = np.zeros((4, 4))
    values[1:3, 1:3] = 300.0  # overlapping windows: the sum dwarfs the score
    text = summarize_explanation(image_explanation(values, score=28.0, params={"window": [1, 2, 2]}))
    assert "Positive attributions sum to 1200 and negative ones to 0; occlusion does not split the score into " \
           "attributions, so these sums need not add up to it." in text
    assert "add up to the score" not in text


@pytest.mark.parametrize("method", ["rise", "score_cam", "ablation_cam"])
def test_summary_of_a_saliency_map_gives_no_sums(method):
    values = 0.5 + 0.01 * np.arange(16, dtype=float).reshape(4, 4)  # RISE-like: a common offset
    text = summarize_explanation(image_explanation(values, method=method, params={}))
    assert "sum to" not in text and "positive attribution" not in text
    assert "The saliency ranges from 0.5 to 0.65; 100% of its highest 10% of pixels (2 of 16) lie in the lower-right " \
           "quarter." in text
    assert f"{method} saliency ranks the pixels: its values are not a split of the score" in text


def test_summary_states_completeness_where_the_numbers_show_it():
    # KernelSHAP over 2x2 patches: every pixel carries its patch's value; the 4 patch values add up
    group_values = np.array([[0.5, -0.1, 0.2, 0.1]])
    mask = ae.masks.grid((4, 4), 2)
    values = group_values[0][mask]
    extras = {"expected_value": np.array([0.1]), "group_values": group_values, "feature_mask": mask[None]}
    text = summarize_explanation(image_explanation(values, score=0.8, method="kernel_shap", params={}, extras=extras))
    assert ("From the expected value 0.1 over the background, the attributions of the 4 feature groups (sum +0.7) "
            "add up to the score 0.8.") in text
    assert "need not add up" not in text
    off = image_explanation(values, score=0.9, method="kernel_shap", params={}, extras=extras)
    assert "add up to the score" not in summarize_explanation(off)  # never claimed when the numbers disagree
