"""The pytest plugin: *.reward.toml files become one test item per invariant."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TRUE_SET = '''
schema = "symreward/1"
name = "upright"

[features]
theta = "obs[0]"
torque = "act[0]"

[[terms]]
name = "upright"
expr = "-theta**2"

[[terms]]
name = "effort"
expr = "-0.001 * torque**2"

[[invariants]]
rule = "bounded"
hi = 0

[[invariants]]
rule = "decreasing"
of = "abs(theta)"

[[invariants]]
rule = "prefers"
better = "abs(theta) < 0.1"
worse = "abs(theta) > 1"

[provenance]
feature_ranges = { theta = [-3.2, 3.2], torque = [-2.0, 2.0] }
'''

PLANTED = TRUE_SET.replace('expr = "-theta**2"', 'expr = "-theta**2 + 0.5 * theta"')


@pytest.fixture
def run(pytester, monkeypatch):
    # load the plugin explicitly, whether or not the package's entry point is installed
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def go(*args: str):
        return pytester.runpytest_subprocess("-p", "symreward._pytest_plugin",
                                             "-p", "no:cacheprovider",
                                             "--symreward-examples", "50", *args)
    return go


def test_true_invariants_pass(pytester, run):
    pytester.makefile(".reward.toml", pendulum=TRUE_SET)
    pytester.makefile(".toml", other='not = "collected"\n')
    result = run("-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*pendulum.reward.toml::invariants[[]0[]]:bounded PASSED*",
                                 "*invariants[[]1[]]:decreasing PASSED*"])


def test_planted_violation_fails_with_counterexample(pytester, run):
    pytester.makefile(".reward.toml", pendulum=PLANTED)
    result = run()
    result.assert_outcomes(passed=1, failed=2)  # the preference still holds
    result.stdout.fnmatch_lines(["*invariant violated*", "*counterexample: theta = *",
                                 "*reward = *", "*upright*"])


def test_bad_artifact_is_a_collection_error(pytester, run):
    pytester.makefile(".reward.toml", broken='schema = "symreward/1"\n',
                      badrule=TRUE_SET.replace('of = "abs(theta)"', 'of = "abs(theta) +"'))
    result = run()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*ERROR collecting*badrule.reward.toml*",
                                 "*invariants[[]1[]].of: syntax error*",
                                 "*ERROR collecting*broken.reward.toml*",
                                 "*missing the [[]features[]] table*"])
    assert "Traceback" not in result.stdout.str()
