"""The audit report: its sections, JSON, HTML (escaped, self-contained, opened in a real
headless browser), partial dependence and the ``symreward audit`` command."""

import base64
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from chromium import Chromium, find_chromium
from support import random_walk, run_cli, true_reward

from symreward.artifact import RewardArtifact
from symreward.audit.dependence import partial_dependence
from symreward.audit.report import plain, render_html, render_json, render_text
from symreward.audit.run import audit, data_summary
from symreward.cli import main
from symreward.data import bradley_terry_preferences, save_dataset
from symreward.data.dataset import dataset_digest

NOTE = "<script>console.error('not escaped')</script><img src=x onerror=alert(1)>"
ARTIFACT = """\
schema = "symreward/1"
name = "walker <b>&amp;</b>"

[features]
x = "obs[0]"
y = "obs[1]"
a = "act[0]"

[[terms]]
name = "upright"
expr = "{upright}*x**2"
note = "{note}"

[[terms]]
name = "forward"
expr = "0.8*y"

[provenance]
objective = "preferences"
options = {{ discount = 1.0, noise = 0.0 }}
feature_ranges = {{ x = [-2.0, 2.0], y = [-2.5, 2.5] }}
front = [
  {{ complexity = 0, heldout_loss = 0.693, heldout_accuracy = 0.5, formula = "0" }},
  {{ complexity = 4, heldout_loss = 0.41, heldout_accuracy = 0.8, formula = "-1.4*x**2" }},
  {{ complexity = 8, heldout_loss = 0.33, heldout_accuracy = 0.86, formula = "-1.5*x**2 + 0.8*y",
     chosen = true }},
]
"""


def dataset_with_pairs(n=300, pairs=60):
    dataset = random_walk(n, episode=50, obs_dim=2)
    prefs = bradley_terry_preferences(dataset, true_reward(dataset), pairs, 5, seed=1)
    return dataset.replace(preferences=prefs)


def write_case(tmp_path, upright=-1.5, note="keep x small", name="reward.toml"):
    path = tmp_path / name
    escaped = note.replace("\\", "\\\\").replace('"', '\\"')  # a TOML basic string
    path.write_text(ARTIFACT.format(upright=upright, note=escaped))
    data = tmp_path / "data.npz"
    if not data.exists():
        save_dataset(dataset_with_pairs(), data)
    return path, data


# ---------------------------------------------------------------------------- the report


def test_audit_builds_every_section_it_can(tmp_path):
    path, _ = write_case(tmp_path)
    other, _ = write_case(tmp_path, upright=-0.5, name="other.toml")
    artifact, dataset = RewardArtifact.load(path), dataset_with_pairs()
    report = audit(artifact, dataset, compare=[RewardArtifact.load(other)])
    assert {"schema", "options", "artifact", "data", "distances", "attribution", "calibration",
            "partial_dependence", "front"} <= set(report)
    (entry,) = report["distances"]
    assert entry["path"] == str(other) and entry["source"] == "compare"
    assert entry["against"] == str(other)  # its name is the audited reward's: named by file
    measures = {m["name"]: m for m in entry["measures"]}
    assert {"EPIC", "DARD", "STARC-epic-L2", "STARC-value-L2"} <= set(measures)
    for measure in measures.values():
        low, high = measure["ci"]
        assert low <= measure["value"] <= high and measure["resamples"] == 200
    assert 0 < measures["EPIC"]["value"] < 1
    assert report["uncertainty"]["members"] >= 2  # the front's runners-up beside the reward
    attribution = report["attribution"]
    assert set(attribution["variance_share"]) == {"upright", "forward"}
    assert sum(attribution["variance_share"].values()) == pytest.approx(1.0)
    assert sum(attribution["pair_share"].values()) == pytest.approx(1.0)
    assert len(attribution["worst_pairs"]) == 10
    assert set(report["partial_dependence"]) == {"x", "y"}  # act[0] is read by no term
    assert report["front"][2]["chosen"] is True
    assert report["data"]["preference_pairs"] == 60
    assert report["data"]["same_as_training"] is None  # the provenance records no data


def test_data_summary_says_whether_the_data_is_the_training_data(tmp_path):
    path, _ = write_case(tmp_path)
    artifact = RewardArtifact.load(path)
    training, other = dataset_with_pairs(), dataset_with_pairs(pairs=30)
    artifact.provenance["data"] = {"sha256": dataset_digest(training)}
    summary = data_summary(artifact, training, artifact.evaluate(training))
    assert summary["same_as_training"] is True
    assert summary["reward"]["mean"] == pytest.approx(np.mean(true_reward(training)))
    assert data_summary(artifact, other, artifact.evaluate(other))["same_as_training"] is False


def test_json_is_deterministic_valid_and_has_no_nan(tmp_path):
    path, _ = write_case(tmp_path)
    artifact = RewardArtifact.load(path)
    report = audit(artifact, dataset_with_pairs(), seed=3)
    again = audit(RewardArtifact.load(path), dataset_with_pairs(), seed=3)
    first, second = render_json(report), render_json(again)
    assert first == second
    assert render_html(report) == render_html(again)  # the figures' bytes too
    assert json.loads(first)["artifact"]["name"] == "walker <b>&amp;</b>"
    assert "NaN" not in first and "Infinity" not in first
    with pytest.raises(ValueError):
        render_json({"x": float("nan")})  # plain() is what removes them


def test_plain_turns_numpy_and_non_finite_numbers_into_json():
    value = plain({"a": np.float32(1.5), "b": (np.int64(2), np.nan), "c": np.array([np.inf]),
                   "d": np.bool_(True), 3: None})
    assert value == {"a": 1.5, "b": [2, None], "c": [None], "d": True, "3": None}
    assert type(value["b"][0]) is int and type(value["d"]) is bool


def test_html_escapes_every_string_from_the_artifact(tmp_path):
    path, _ = write_case(tmp_path, note=NOTE)
    report = audit(RewardArtifact.load(path), dataset_with_pairs())
    report["unknown section <i>"] = {"text": "</pre><script>bad()</script>"}
    page = render_html(report)
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert "&lt;script&gt;console.error(&#x27;not escaped&#x27;)&lt;/script&gt;" in page
    assert "walker &lt;b&gt;&amp;amp;&lt;/b&gt;" in page
    assert "unknown section &lt;i&gt;" in page  # an unknown section is shown, as JSON
    assert "Content-Security-Policy" in page


def test_html_is_self_contained_with_decodable_png_figures(tmp_path):
    path, _ = write_case(tmp_path)
    page = render_html(audit(RewardArtifact.load(path), dataset_with_pairs()))
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4  # term shares, calibration, partial dependence, front
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        png = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 100 and height > 100
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing loaded from elsewhere


def test_html_renders_sections_other_modules_add():
    """The exploit search and the front's disagreement come from other modules; the page
    renders them from the shapes of the audit schema."""
    report = {
        "artifact": {"name": "r", "formula": "-x**2", "terms": [], "features": {}},
        "exploits": {
            "maximum": {"value": 3.0, "bound": 3.0000001, "gap": 1e-7, "certified": True,
                        "state": {"x": 0.25}, "boxes": 120, "seconds": 0.5,
                        "distance_to_data": 4.5, "nearest_index": 17, "data_best": 1.0,
                        "above_data_best": 2.0},
            "unbounded_terms": [{"term": "cube", "feature": "x", "reason": "x**3 <odd>"}],
            "out_of_distribution": {"fraction": 0.125, "per_feature": {"x": 0.125}},
            "domain": {"x": {"lo": None, "hi": 2.0, "source": "recorded"}}},
        "uncertainty": {"members": 4, "mean": 0.1, "p90": 0.2, "max": 0.7,
                        "most_uncertain": [{"index": 41, "spread": 0.7}]},
    }
    page = render_html(report)
    for text in ("Exploit search", "x = 0.25", "x**3 &lt;odd&gt;", "0.125", "recorded",
                 "Disagreement of the Pareto front", "<td class=\"n\">41</td>"):
        assert text in page
    summary = render_text(report)
    assert "maximum of the reward over the domain: 3" in summary and "x = 0.25" in summary


def test_partial_dependence_of_an_additive_reward_is_its_term(tmp_path):
    """For ``-1.5 x² + 0.8 y`` the dependence on x is ``-1.5 v² + 0.8 mean(y)`` exactly, over
    the data's range widened by a fifth on each side."""
    path, _ = write_case(tmp_path)
    artifact = RewardArtifact.load(path)
    dataset = dataset_with_pairs()
    values = dataset.observations[:, :2]
    curves = partial_dependence(artifact, values, rows=10_000, points=9)
    grid = np.array(curves["x"]["grid"])
    low, high = values[:, 0].min(), values[:, 0].max()
    assert grid[0] == pytest.approx(low - 0.2 * (high - low))
    assert grid[-1] == pytest.approx(high + 0.2 * (high - low))
    expected = -1.5 * grid**2 + 0.8 * values[:, 1].mean()
    assert curves["x"]["mean"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert curves["x"]["data_range"] == [low, high]
    assert curves["x"]["recorded_range"] is None
    bounded = partial_dependence(artifact, values, points=9, domain={"x": (low, None)})
    assert bounded["x"]["grid"][0] == low  # a bound cuts the widening


def test_importing_the_package_and_cli_does_not_import_matplotlib():
    code = ("import sys, symreward, symreward.cli, symreward.audit.run, symreward.audit.report;"
            "print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------------- the command


def test_cli_writes_the_page_and_the_json(tmp_path, capsys):
    path, data = write_case(tmp_path)
    result = run_cli("audit", path, data, "-o", tmp_path / "report.html")
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'report.html'}" in result.stdout
    assert "pairs the reward gets most wrong" in result.stdout
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["audit", str(path), str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "symreward-audit/1"
    assert main(["audit", str(path), str(data), "-o", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert main(["audit", str(path), str(data), "--json", "-o", str(tmp_path / "r.txt")]) == 0
    assert json.loads((tmp_path / "r.txt").read_text()) == report


@pytest.mark.parametrize("problem", ["artifact", "data", "compare", "feature", "folder",
                                     "option"])
def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys, problem):
    path, data = write_case(tmp_path)
    args = [path, data]
    if problem == "artifact":
        args = [tmp_path / "missing.toml", data]
        expected = ["missing.toml", "no such file"]
    elif problem == "data":
        args = [path, tmp_path / "missing.npz"]
        expected = ["missing.npz", "no such file"]
    elif problem == "compare":
        args += ["--compare", tmp_path / "gone.toml"]
        expected = ["gone.toml", "no such file"]
    elif problem == "feature":
        wide = tmp_path / "wide.toml"
        wide.write_text(path.read_text().replace('"obs[1]"', '"obs[7]"'))
        args = [wide, data]
        expected = ["wide.toml", "feature 'y' reads obs[7]", "data.npz"]
    elif problem == "folder":
        args += ["-o", tmp_path / "no" / "report.html"]
        expected = ["does not exist"]
    else:
        args += ["--discount", "1.5", "--seed", "1"]
        expected = ["--discount 1.5: must be in [0, 1]"]
    assert main(["audit", *map(str, args)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("symreward audit: error: ") and "Traceback" not in stderr
    assert all(text in stderr for text in expected), stderr


def test_cli_reports_a_dataset_without_transitions(tmp_path, capsys):
    path, _ = write_case(tmp_path)
    empty = tmp_path / "empty.npz"
    np.savez(empty, observations=np.zeros((0, 2)), actions=np.zeros((0, 1)),
             next_observations=np.zeros((0, 2)), terminals=np.zeros(0, bool),
             timeouts=np.zeros(0, bool))
    assert main(["audit", str(path), str(empty)]) == 2
    stderr = capsys.readouterr().err
    assert "empty.npz" in stderr and "no transitions" in stderr


# ---------------------------------------------------------------------------- a real browser


CHROMIUM = find_chromium()
FIGURES = """Promise.all([...document.images].map(img => img.decode().then(
    () => [img.naturalWidth, img.naturalHeight, img.getBoundingClientRect().width])))"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install "
                                             "chromium; .ci/run installs it when it can)")
def test_the_page_renders_in_a_headless_browser(tmp_path):
    path, data = write_case(tmp_path, note=NOTE)
    other, _ = write_case(tmp_path, upright=-0.5, name="other.toml")
    page_path = tmp_path / "report.html"
    result = run_cli("audit", path, data, "--compare", other, "-o", page_path)
    assert result.returncode == 0, result.stderr
    url = page_path.as_uri()
    with Chromium(CHROMIUM) as browser:
        for javascript in (True, False):
            page = browser.load(url, javascript=javascript)
            assert page.evaluate("document.title") == "symreward audit: walker <b>&amp;</b>"
            figures = page.evaluate(FIGURES)
            assert len(figures) == 4
            assert all(w > 100 and h > 100 and shown > 100 for w, h, shown in figures), figures
            assert page.evaluate("document.scripts.length") == 0
            text = page.evaluate("document.body.innerText")
            for expected in ("Pairs the reward gets most wrong", "upright", "forward",
                             "Partial dependence", "The Pareto front", "EPIC", NOTE):
                assert expected in text
            sections = page.evaluate("[...document.querySelectorAll('section')].map(s => s.id)")
            assert sections == ["artifact", "data", "distances", "uncertainty", "exploits",
                                "attribution", "calibration", "partial_dependence", "front"]
            assert page.problems == []


SPOOFABLE = """\
schema = "symreward/1"
name = "odometer"

[features]
position = "obs[0]"
odometer = "obs[1]"

[[terms]]
name = "progress"
expr = "odometer - 0.5*position"

[provenance]
feature_ranges = { position = [-1.0, 1.0], odometer = [-1.0, 1.0] }
"""


def test_audit_writes_an_exploit_far_from_the_data_as_a_finding(tmp_path):
    """In the data the odometer reads the position; the reward pays for the odometer, so its
    maximum over the box is where the two disagree, far from every recorded state and above
    the data's best: the finding asks that state to score below the data's best state."""
    from symreward.data import Dataset
    from symreward.findings import read_findings

    position = np.linspace(-1.0, 1.0, 400)
    obs = np.column_stack([position, position])
    save_dataset(Dataset(observations=obs, actions=np.zeros((400, 1)), next_observations=obs,
                         terminals=np.zeros(400, bool), timeouts=np.zeros(400, bool)),
                 tmp_path / "data.npz")
    (tmp_path / "r.toml").write_text(SPOOFABLE)
    assert main(["audit", str(tmp_path / "r.toml"), str(tmp_path / "data.npz"),
                 "--exploit-time", "5", "--findings", str(tmp_path / "f.toml")]) == 0
    artifact = RewardArtifact.load(tmp_path / "r.toml")
    [finding] = read_findings(tmp_path / "f.toml", artifact).findings
    assert finding.want == "below" and finding.probe == "exploit-maximum"
    assert finding.state == pytest.approx({"position": -1.0, "odometer": 1.0}, abs=1e-6)
    assert finding.other == pytest.approx({"position": 1.0, "odometer": 1.0})
    assert not finding.accept
