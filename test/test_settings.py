"""Run settings: flag > HNSEG_* environment variable > default; invalid values → SettingsError."""

from __future__ import annotations

from pathlib import Path

import pytest

from hnseg.errors import SettingsError
from hnseg.settings import ENV, REPO_WEIGHTS, RunSettings, build_settings

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_grand_challenge_ones():
    s = build_settings({}, environ={})
    assert s.input_dir == Path("/input")
    assert s.output_dir == Path("/output")
    assert s.model_dir == Path("/opt/ml/model")
    assert s.weights_dir is None
    assert s.task is None
    assert s.predict.device == "auto"
    assert s.predict.tta == "default"
    assert s.predict.tile_step == 0.5
    assert s.predict.folds is None and s.predict.prior_margin is None
    assert s.predict.prior_overlap_rule is None
    assert REPO_WEIGHTS == REPO / "weights"


# (settings key, flag value, env value, default, how to read it from RunSettings, expected types)
CASES = [
    ("input_dir", Path("/flag/in"), "/env/in", Path("/input"), lambda s: s.input_dir),
    ("output_dir", Path("/flag/out"), "/env/out", Path("/output"), lambda s: s.output_dir),
    ("weights_dir", Path("/flag/w"), "/env/w", None, lambda s: s.weights_dir),
    ("model_dir", Path("/flag/m"), "/env/m", Path("/opt/ml/model"), lambda s: s.model_dir),
    ("task", "hntsmrg-task1", "hntsmrg-task2", None, lambda s: s.task),
    ("device", "cpu", "cuda", "auto", lambda s: s.predict.device),
    ("tta", "off", "lr", "default", lambda s: s.predict.tta),
    ("tile_step", 0.25, "0.75", 0.5, lambda s: s.predict.tile_step),
]


def _typed(value):
    return Path(value) if isinstance(value, str) and value.startswith("/") else value


@pytest.mark.parametrize("key, flag, env, default, get", CASES, ids=[c[0] for c in CASES])
def test_precedence_flag_over_env_over_default(key, flag, env, default, get):
    var = ENV[key]
    assert get(build_settings({}, environ={})) == default
    assert get(build_settings({key: None}, environ={})) == default  # argparse's "not given"
    env_value = get(build_settings({key: None}, environ={var: env}))
    assert env_value == (float(env) if key == "tile_step" else _typed(env))
    assert get(build_settings({key: flag}, environ={var: env})) == flag
    assert get(build_settings({key: flag}, environ={})) == flag
    # an empty variable counts as unset
    assert get(build_settings({}, environ={var: ""})) == default


def test_env_var_names():
    assert ENV == {
        "input_dir": "HNSEG_INPUT", "output_dir": "HNSEG_OUTPUT", "model_dir": "HNSEG_MODEL_DIR",
        "weights_dir": "HNSEG_WEIGHTS", "task": "HNSEG_TASK", "device": "HNSEG_DEVICE",
        "tta": "HNSEG_TTA", "tile_step": "HNSEG_TILE_STEP", "force": "HNSEG_FORCE",
        "trusted_manifest": "HNSEG_TRUSTED_MANIFEST",
    }


def test_mixed_sources():
    s = build_settings(
        {"input_dir": Path("/a"), "tta": None, "device": "cpu"},
        environ={"HNSEG_OUTPUT": "/b", "HNSEG_TTA": "lr", "HNSEG_DEVICE": "cuda", "UNRELATED": "x"},
    )
    assert (s.input_dir, s.output_dir, s.predict.tta, s.predict.device) == (
        Path("/a"), Path("/b"), "lr", "cpu")


def test_environ_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("HNSEG_TTA", "off")
    monkeypatch.delenv("HNSEG_DEVICE", raising=False)
    s = build_settings({})
    assert s.predict.tta == "off" and s.predict.device == "auto"


@pytest.mark.parametrize(
    "flags, environ, field",
    [
        ({"tta": "x"}, {}, "tta"),
        ({}, {"HNSEG_TTA": "x"}, "tta"),
        ({"tile_step": 0}, {}, "tile_step"),
        ({}, {"HNSEG_TILE_STEP": "0"}, "tile_step"),
        ({"tile_step": 1.5}, {}, "tile_step"),
        ({}, {"HNSEG_TILE_STEP": "half"}, "tile_step"),
        ({"tile_step": 1e-9}, {}, "tile_step"),  # 1e27 tiles: refused, not run until killed
        ({"tile_step": 0.2}, {}, "greater than or equal to 0.25"),
        ({}, {"HNSEG_TILE_STEP": "nan"}, "tile_step"),
        ({}, {"HNSEG_TILE_STEP": "inf"}, "tile_step"),
        ({"device": "tpu"}, {}, "device"),
        ({}, {"HNSEG_DEVICE": "tpu"}, "device"),
        ({"prior_margin": "5,5"}, {}, "prior_margin"),
        ({"prior_margin": "five"}, {}, "five"),
        ({"folds": "0,x"}, {}, "'x'"),
    ],
)
def test_invalid_values_raise_settings_error(flags, environ, field):
    with pytest.raises(SettingsError) as exc:
        build_settings(flags, environ=environ)
    msg = str(exc.value)
    assert msg.startswith("invalid run settings:")
    assert field in msg
    assert exc.value.name == "SettingsError" and exc.value.exit_code == 2


def test_weight_candidates_order():
    s = build_settings({"weights_dir": Path("/w")}, environ={})
    assert s.weight_candidates() == [Path("/w"), Path("/opt/ml/model"), REPO_WEIGHTS]
    s = build_settings({}, environ={"HNSEG_WEIGHTS": "/envw", "HNSEG_MODEL_DIR": "/m"})
    assert s.weight_candidates() == [Path("/envw"), Path("/m"), REPO_WEIGHTS]
    # no explicit weights: /opt/ml/model, then the baked repository weights
    assert build_settings({}, environ={}).weight_candidates() == [Path("/opt/ml/model"), REPO_WEIGHTS]
    assert RunSettings().weight_candidates() == [Path("/opt/ml/model"), REPO_WEIGHTS]


@pytest.mark.parametrize(
    "given, expected",
    [("5", (5, 5, 5)), ("5,5,2", (5, 5, 2)), (" 3 , 4 , 1 ", (3, 4, 1)), ((7, 7, 3), (7, 7, 3)),
     (None, None)],
)
def test_prior_margin(given, expected):
    assert build_settings({"prior_margin": given}, environ={}).predict.prior_margin == expected


@pytest.mark.parametrize("given, expected", [("0,2,4", (0, 2, 4)), ("3", (3,)), (None, None)])
def test_folds(given, expected):
    assert build_settings({"folds": given}, environ={}).predict.folds == expected


def test_prior_overlap_rule_flag_only():
    assert build_settings({"prior_overlap_rule": False}, environ={}).predict.prior_overlap_rule is False
    assert build_settings({"prior_overlap_rule": True}, environ={}).predict.prior_overlap_rule is True


def test_cli_flags_reach_settings():
    """The argparse namespace of ``hnseg predict`` maps onto build_settings' keys."""
    import argparse

    from hnseg.predict_cli import configure_parser

    p = argparse.ArgumentParser()
    configure_parser(p)
    args = p.parse_args(["--input", "/i", "--output", "/o", "--weights", "/w", "--device", "cpu",
                         "--tta", "lr", "--tile-step", "0.3", "--prior-margin", "5,5,2",
                         "--folds", "0,1", "--no-prior-overlap-rule", "--task", "hntsmrg-task2"])
    s = build_settings(vars(args), environ={"HNSEG_INPUT": "/envi", "HNSEG_TTA": "off"})
    assert (s.input_dir, s.output_dir, s.weights_dir, s.task) == (
        Path("/i"), Path("/o"), Path("/w"), "hntsmrg-task2")
    assert s.predict.device == "cpu" and s.predict.tta == "lr" and s.predict.tile_step == 0.3
    assert s.predict.prior_margin == (5, 5, 2) and s.predict.folds == (0, 1)
    assert s.predict.prior_overlap_rule is False
    # nothing given: environment, then defaults
    s = build_settings(vars(p.parse_args([])), environ={"HNSEG_INPUT": "/envi"})
    assert s.input_dir == Path("/envi") and s.predict.tta == "default"
    assert s.predict.prior_overlap_rule is None
