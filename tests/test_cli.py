"""The thin CLI: help, version, discovery of commands, exit codes."""

import subprocess
import sys

import pytest

import audit
from audit.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ml-audit {audit.__version__}"


def test_help_lists_every_command_module(capsys):
    import pkgutil

    import audit.commands

    names = [m.name for m in pkgutil.iter_modules(audit.commands.__path__) if not m.name.startswith("_")]
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "config" in names
    for name in names:
        assert name in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: audit" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_missing_path_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["config", str(missing)]) == 2
    assert f"path does not exist: {missing}" in capsys.readouterr().err


def test_config_command_shows_values_from_the_project(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("[tool.audit.flaky]\nbudget = 42\n")
    assert main(["config", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "flaky.budget" in out and "42.0" in out


def test_console_script_and_module_entry_agree():
    by_module = subprocess.run([sys.executable, "-m", "audit", "--version"], capture_output=True, text=True)
    assert by_module.returncode == 0 and by_module.stdout.strip() == f"ml-audit {audit.__version__}"


def test_every_command_has_help_text():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.description, name


def test_error_text_with_brackets_is_printed_verbatim(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("[tool.audit.mutate]\n'bad[cpu]' = 1\n")
    assert main(["config", str(tmp_path)]) == 2
    assert "tool.audit.mutate.bad[cpu]" in capsys.readouterr().err
