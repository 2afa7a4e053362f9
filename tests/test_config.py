"""[tool.audit] parsing: defaults, good values, CLI precedence, and the errors users will hit."""

import pytest

from audit.cli import main
from audit.config import SCHEMA, documented_keys, load_config
from audit.errors import ConfigError


def write(tmp_path, text):
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_no_pyproject_gives_defaults(tmp_path):
    cfg = load_config(tmp_path)
    assert cfg.source is None
    assert cfg.root == tmp_path.resolve()
    assert cfg.db == "reports/audit.sqlite"
    assert cfg.flaky.budget == SCHEMA["flaky"]["budget"].default
    assert cfg.mutate.fail_under is None


def test_pyproject_without_audit_table_gives_defaults(tmp_path):
    write(tmp_path, '[project]\nname = "x"\n')
    cfg = load_config(tmp_path)
    assert cfg.test_paths == [] and cfg.flaky.orders == ["file", "reversed", "shuffle"]


def test_good_values_are_read(tmp_path):
    write(tmp_path, """
[tool.audit]
test_paths = ["tests/unit"]
pytest_args = ["-x"]
[tool.audit.flaky]
budget = 30
threads = [1, 4]
hashseed = false
[tool.audit.mutate]
fail_under = 75
deselect = ["tests/test_a.py::test_b"]
""")
    cfg = load_config(tmp_path)
    assert cfg.test_paths == ["tests/unit"] and cfg.pytest_args == ["-x"]
    assert cfg.flaky.budget == 30.0 and isinstance(cfg.flaky.budget, float)
    assert cfg.flaky.threads == [1, 4] and cfg.flaky.hashseed is False
    assert cfg.mutate.fail_under == 75.0
    assert cfg.mutate.deselect == ["tests/test_a.py::test_b"]


def test_cli_overrides_win_and_none_means_not_given(tmp_path):
    write(tmp_path, "[tool.audit.flaky]\nbudget = 30\nruns = 7\n")
    cfg = load_config(tmp_path, {"flaky": {"budget": 12, "runs": None}})
    assert cfg.flaky.budget == 12.0
    assert cfg.flaky.runs == 7


def test_defaults_are_not_shared_between_loads(tmp_path):
    first = load_config(tmp_path)
    first.flaky.orders.append("alone")
    assert load_config(tmp_path).flaky.orders == ["file", "reversed", "shuffle"]


def test_unknown_key_names_key_and_file(tmp_path):
    write(tmp_path, "[tool.audit.flaky]\nbugdet = 30\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert "tool.audit.flaky.bugdet" in message
    assert str(tmp_path / "pyproject.toml") in message
    assert "budget" in message  # the known keys are listed
    assert info.value.exit_code == 2


def test_unknown_top_level_key(tmp_path):
    write(tmp_path, "[tool.audit]\ntestpaths = ['t']\n")
    with pytest.raises(ConfigError, match=r"'tool\.audit\.testpaths'"):
        load_config(tmp_path)


@pytest.mark.parametrize("text, key, wanted", [
    ("[tool.audit.flaky]\nbudget = 'fast'\n", "tool.audit.flaky.budget", "float"),
    ("[tool.audit.flaky]\nhashseed = 1\n", "tool.audit.flaky.hashseed", "bool"),
    ("[tool.audit.flaky]\nruns = true\n", "tool.audit.flaky.runs", "int"),
    ("[tool.audit.flaky]\nthreads = [1, 'two']\n", "tool.audit.flaky.threads", "list[int]"),
    ("[tool.audit]\npytest_args = '-x'\n", "tool.audit.pytest_args", "list[str]"),
])
def test_wrong_type_names_key_type_and_file(tmp_path, text, key, wanted):
    write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert f"'{key}' must be {wanted}" in str(info.value)
    assert "pyproject.toml" in str(info.value)


def test_section_must_be_a_table(tmp_path):
    write(tmp_path, "[tool.audit]\nflaky = 3\n")
    with pytest.raises(ConfigError, match="tool.audit.flaky' must be a table"):
        load_config(tmp_path)


def test_malformed_toml_is_a_clear_error(tmp_path):
    write(tmp_path, "[tool.audit\nbudget = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)


def test_wrong_type_on_the_command_line_is_reported_as_such(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: --budget \('tool.audit.flaky.budget'\)"):
        load_config(tmp_path, {"flaky": {"budget": "soon"}})


def test_cli_exits_2_on_bad_config(tmp_path, capsys):
    write(tmp_path, "[tool.audit]\nnope = 1\n")
    assert main(["config", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "tool.audit.nope" in err and "pyproject.toml" in err


def test_every_key_is_documented():
    rows = documented_keys()
    assert len(rows) == sum(len(keys) for keys in SCHEMA.values())
    for dotted, kind, _default, doc in rows:
        assert doc and kind, dotted


def test_the_old_attribute_budget_is_read_with_a_deprecation_note_not_a_crash(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.audit.flaky]\nattribute_budget = 300\n")
    cfg = load_config(tmp_path, {"flaky": {"attribute_budget": 120.0}})
    assert not hasattr(cfg.flaky, "attribute_budget")
    assert cfg.flaky.attribute is True and cfg.flaky.budget == 150.0
    assert len(cfg.deprecations) == 2
    assert "'tool.audit.flaky.attribute_budget' is deprecated" in cfg.deprecations[0]
    assert "one budget ('budget') now covers detection and attribution" in cfg.deprecations[0]
    assert cfg.deprecations[1].startswith("command line:")
