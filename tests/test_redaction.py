"""Issue 25, security: a password in a storage or tracking URL never reaches MLflow params, tags, errors or banners."""

import pytest

from gwpe.config import parse_config
from gwpe.errors import ConfigError
from gwpe.redaction import redact, redact_value
from gwpe.tracking import stage_params

from conftest import gwpe_env, run_gwpe, tiny_profile

SECRET = "s3cret-Pw"
URL = f"postgresql://gw:{SECRET}@127.0.0.1:9/optuna"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (URL, "postgresql://gw:***@127.0.0.1:9/optuna"),
        ("mysql+pymysql://root:pa:ss@db/x", "mysql+pymysql://root:***@db/x"),
        ("https://mlflow.example/api?token=abc123&x=1", "https://mlflow.example/api?token=***&x=1"),
        ("sqlite:////work/project/mlflow.db", "sqlite:////work/project/mlflow.db"),
        ("http://user@host:5000", "http://user@host:5000"),
    ],
)
def test_redact_masks_url_passwords_and_secret_pairs(text, expected):
    assert redact(text) == expected


def test_secret_named_keys_are_masked_whole():
    assert redact_value("tracking.db_password", "hunter2") == "***"
    assert redact_value("flows.training.learning_rate", 0.001) == 0.001


def test_stage_params_and_errors_never_hold_the_password():
    profile = tiny_profile()
    profile["distill"]["sweep"]["storage"] = URL
    params = stage_params(parse_config(profile), "sweep")
    assert params["distill.sweep.storage"] == "postgresql://gw:***@127.0.0.1:9/optuna"
    assert not any(SECRET in str(v) for v in params.values())
    from gwpe.tuning.storage import build_storage

    with pytest.raises(ConfigError) as error:  # driver missing or connection refused: either way, no password
        build_storage(URL, ".")
    assert SECRET not in str(error.value) and "gw:***@" in str(error.value)


def test_tracking_uri_with_a_password_fails_in_one_redacted_line(tmp_path):
    env = gwpe_env(tmp_path, MLFLOW_TRACKING_URI=f"postgresql://gw:{SECRET}@127.0.0.1:9/mlflow")
    result = run_gwpe(["models", "list"], cwd=tmp_path, env=env)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert SECRET not in result.stderr + result.stdout and "gw:***@127.0.0.1" in result.stderr
