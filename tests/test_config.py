import pytest

from gwpe.config import load_config, parse_config
from gwpe.errors import ConfigError

from conftest import REPO, run_gwpe, tiny_profile, write_profile


def test_shipped_profiles_are_valid():
    assert load_config(REPO / "params.yaml").profile == "default"
    paper = load_config(REPO / "experiments" / "paper.yaml")
    assert paper.profile == "paper" and paper.h22.time.dt == 0.1 and paper.h22.time.t_start == -10000.0


@pytest.mark.parametrize(
    "h22, expected",
    [
        ({"grid": {"dq": -0.5}}, "h22.grid.dq = -0.5: Input should be greater than 0"),
        ({"grid": {"dqq": 0.5}}, "h22.grid.dqq: unknown key; allowed keys here: dq, ds, q_max, q_min, s_max, s_min"),
        ({"time": {"dt": "0.1"}}, "h22.time.dt = '0.1': Input should be a valid number"),
        ({"store": {"chunk_size": 2.5}}, "h22.store.chunk_size = 2.5: Input should be a valid integer"),
        ({"backend": "seobnrv5"}, "h22.backend = 'seobnrv5': Input should be 'imrphenomthm' or 'nrhybsur3dq8'"),
        ({"grid": {"q_max": 12.0}}, "h22.grid.q_max = 12.0: Input should be less than or equal to 10"),
        ({"time": {"t_start": 5.0}}, "h22.time.t_start = 5.0: Input should be less than 0"),
    ],
)
def test_bad_values_fail_with_one_line_naming_key_and_value(h22, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(tiny_profile(**h22), "params.yaml")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_cli_config_error_exits_nonzero_before_any_work_and_keeps_existing_data(tmp_path, tiny_params):
    run_gwpe(["generate", "h22", "--split", "test"], tmp_path, check=True)
    store = tmp_path / "data" / "h22" / "test.zarr"
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    write_profile(tiny_params, tiny_profile(grid={"ds": 0.0}))
    result = run_gwpe(["generate", "h22", "--split", "test"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["gwpe: error: config error in params.yaml: h22.grid.ds = 0.0: Input should be greater than 0"]
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_cli_rejects_unknown_split_and_missing_file(tmp_path, tiny_params):
    result = run_gwpe(["generate", "h22", "--split", "tran"], tmp_path)
    assert result.returncode == 2 and "invalid choice: 'tran'" in result.stderr and "'validation'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_gwpe(["generate", "h22", "--params", "nope.yaml"], tmp_path)
    assert result.returncode == 2 and "config file not found: nope.yaml" in result.stderr


def test_dvc_exp_run_set_param_changes_one_line_of_params_yaml(tmp_path):
    """Issue 24, friction 2: ``dvc exp run -S`` rewrote params.yaml's formatting (every ``null`` became an empty
    value). params.yaml is kept in the form DVC's round-trip writer produces, so -S changes one line."""
    import difflib

    from dvc.utils.serialize import modify_yaml

    from conftest import REPO

    copy = tmp_path / "params.yaml"
    copy.write_text((REPO / "params.yaml").read_text())
    with modify_yaml(copy) as params:  # what `dvc exp run -S flows.training.max_epochs=2` does to the file
        params["flows"]["training"]["max_epochs"] = 2
    changed = [
        line
        for line in difflib.unified_diff((REPO / "params.yaml").read_text().splitlines(), copy.read_text().splitlines())
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert len(changed) == 2 and changed[1].strip().startswith("+") and "max_epochs: 2" in changed[1], changed
