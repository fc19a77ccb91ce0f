import pytest

from symreward.errors import FeatureError
from symreward.features import FeatureSet
from symreward.formula import input_symbol, parse


def test_from_toml_and_resolution(tmp_path):
    path = tmp_path / "features.toml"
    path.write_text(
        '# comment\n[features]\nspeed = "sqrt(vx**2 + vy**2)"\nvx = "obs[2]"\nvy = "obs[3]"\n'
        'x_vel = "info.x_velocity"\n')
    features = FeatureSet.from_toml(path)
    assert features.names == ["speed", "vx", "vy", "x_vel"]
    assert features.order.index("vx") < features.order.index("speed")
    assert features.resolved("speed") == parse("sqrt(obs[2]**2 + obs[3]**2)", allow_inputs=True)
    assert features.inputs() == {"obs": {2, 3}, "act": set(), "next_obs": set(),
                                 "info": {"x_velocity"}}
    assert features.info_names() == ["x_velocity"]
    assert features.dependencies(["speed"]) == ["vx", "vy", "speed"]


def test_cycle_is_named():
    with pytest.raises(FeatureError, match="cycle: a -> b -> c -> a"):
        FeatureSet({"a": "b + 1", "b": "c * 2", "c": "a - obs[0]"})
    with pytest.raises(FeatureError, match="cycle: a -> a"):
        FeatureSet({"a": "a + obs[0]"})


def test_bad_definitions(tmp_path):
    with pytest.raises(FeatureError, match="feature 'a' = 'obs\\[0\\] \\^ 2'.*use \\*\\*"):
        FeatureSet({"a": "obs[0] ^ 2"})
    with pytest.raises(FeatureError, match="feature name 'obs'"):
        FeatureSet({"obs": "act[0]"})
    with pytest.raises(FeatureError, match="must be a string"):
        FeatureSet({"a": 3})
    with pytest.raises(FeatureError, match="non-empty"):
        FeatureSet({})
    missing = tmp_path / "nope.toml"
    with pytest.raises(FeatureError, match="nope.toml: no such file"):
        FeatureSet.from_toml(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[features\n")
    with pytest.raises(FeatureError, match="broken.toml: not valid TOML"):
        FeatureSet.from_toml(broken)
    empty = tmp_path / "empty.toml"
    empty.write_text("x = 1\n")
    with pytest.raises(FeatureError, match="missing the \\[features\\] table"):
        FeatureSet.from_toml(empty)


def test_dimension_check_names_feature_and_width():
    features = FeatureSet({"a": "obs[1]", "b": "act[2]", "c": "info.height"}, source="f.toml")
    features.check_dimensions(2, 3, {"height"})
    with pytest.raises(FeatureError, match="f.toml: feature 'a' reads obs\\[1\\] but d.npz has "
                                           "observations of width 1"):
        features.check_dimensions(1, 3, {"height"}, data_source="d.npz")
    with pytest.raises(FeatureError, match="feature 'b' reads act\\[2\\].*width 2"):
        features.check_dimensions(2, 2, {"height"})
    with pytest.raises(FeatureError, match="no key 'infos/height'"):
        features.check_dimensions(2, 3, {"speed"})


def test_input_symbols_are_named_as_written():
    assert input_symbol("next_obs", 4).name == "next_obs[4]"
