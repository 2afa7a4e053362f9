"""``[tool.audit]`` settings from the target project's pyproject.toml, merged under CLI options.

Every key is declared once in ``SCHEMA`` with its type, default and a line of documentation, so
that the README table, the type check and the defaults cannot drift apart. An unknown key or a
value of the wrong type is a ``ConfigError`` naming the key and the file (exit code 2).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from audit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class Key:
    """One documented setting: its type (as a short name), default and meaning."""

    type: str  # "bool", "int", "float", "str", "list[str]", "list[int]", "float?" (float or absent)
    default: Any
    doc: str
    above: float | None = None     # a number must be greater than this
    least: float | None = None     # ... at least this
    most: float | None = None      # ... at most this (list items too)
    choices: tuple[str, ...] = ()  # a string must be one of these (when given)

    def bound_error(self, value: Any) -> str | None:
        """Why *value* is out of range, or None when it is in range (or not a number)."""
        if self.choices and isinstance(value, str) and value not in self.choices:
            return "must be one of " + ", ".join(repr(c) for c in self.choices)
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if self.above is not None and not v > self.above:
                return f"must be greater than {self.above:g}"
            if self.least is not None and v < self.least:
                return f"must be at least {self.least:g}"
            if self.most is not None and v > self.most:
                return f"must be at most {self.most:g}"
        return None


# section name -> key -> Key.  The top-level table is "" ([tool.audit] itself).
SCHEMA: dict[str, dict[str, Key]] = {
    "": {
        "test_paths": Key("list[str]", [], "test files or folders to run (default: pytest's own testpaths)"),
        "pytest_args": Key("list[str]", [], "extra arguments passed to every pytest run"),
        "db": Key("str", "reports/audit.sqlite", "history store, relative to the project root"),
        "reports_dir": Key("str", "reports", "where reports are written, relative to the project root"),
        "executor": Key("str", "local", "where flaky units and mutant shards run: 'local' (this machine) or 'ray' "
                        "(a Ray cluster; pip install 'ml-audit[ray]')", choices=("local", "ray")),
        "address": Key("str", "", "the Ray cluster for executor 'ray' (empty: $RAY_ADDRESS, else a local instance)"),
    },
    "flaky": {
        "budget": Key("float", 150.0, "wall-clock seconds to spend at most", above=0),
        "runs": Key("int", 0, "stop after this many executions per test (0: adaptive within the budget)", least=0),
        "timeout": Key("float", 60.0, "seconds one test execution may take before it is recorded as hung", above=0),
        "workers": Key("int", 0, "parallel pytest sessions (0: one per CPU core)", least=0),
        "seed": Key("int", 0, "master seed of the plan, so that an audit can be repeated (0: a fresh one, printed)",
                    least=0),
        "rng": Key("list[str]", ["torch", "numpy", "random", "entropy"],
                   "RNG families to vary (pinned vs fresh per execution); entropy: os.urandom, uuid, secrets, ..."),
        "hashseed": Key("bool", True, "vary PYTHONHASHSEED between interpreters"),
        "threads": Key("list[int]", [], "torch thread counts to try (default: 1, 2 and the machine's default)",
                       least=1),
        "orders": Key("list[str]", ["file", "reversed", "shuffle"], "test orders to try"),
        "determinism": Key("bool", True, "toggle torch.use_deterministic_algorithms (and CUDA flags on GPUs)"),
        "fork_server": Key("bool", True, "fork new interpreters from zygotes that have imported pytest and torch "
                           "(Linux; false: start every one fresh)"),
        "attribute": Key("bool", True, "find why and where each flaky test fails, within the same budget "
                         "(false: detection only)"),
        "attribute_share": Key("float", 0.6, "the part of the budget kept for attribution while detection runs; "
                               "detection hands over early once every suspect is flaky", above=0, most=0.9),
        "evidence_rate": Key("float", 0.05, "a pass is strong evidence once its failure rate is bounded below this "
                             "(95% confidence): about 59 failure-free executions at 5%", above=0, most=0.5),
    },
    "mutate": {
        "operators": Key("str", "all", "'ml', 'mutmut', 'all' or a comma-separated list of operator names"),
        "paths_to_mutate": Key("list[str]", [], "source folders or files to mutate (default: the project's packages)"),
        "deselect": Key("list[str]", [], "test node ids left out of mutation runs (known failures, thread-pinned goldens)"),
        "fail_under": Key("float?", None, "exit 1 when the mutation score (0-100) is below this", least=0, most=100),
        "max_children": Key("int", 0, "parallel mutant workers (0: one per CPU core)", least=0),
        "timeout": Key("float", 30.0, "seconds one mutant's test run may take at least before it counts as a timeout",
                       above=0),
        "since": Key("str", "", "mutate only lines changed since this git ref (empty: every line)"),
        "noisy": Key("bool", False, "keep mutmut's noisy mutations on ML code (case/XX of enum-like strings, None injection)"),
        "seed_rechecks": Key("int", 4, "other seeds a kill by a test that draws randomness is re-checked under "
                                       "(0: no re-check; such kills then count as killed)", least=0),
    },
    "review": {
        "max_score_drop": Key("float", 2.0, "largest allowed fall of the mutation score, in points", least=0),
        "fail_on_new_flaky": Key("bool", True, "fail when a test is flaky now but was not in the baseline"),
        "fail_on_changed_survivors": Key("bool", True, "fail when ML mutants go undetected (survived, uncovered, "
                                                       "seed-dependent) on lines changed since the baseline"),
        "fail_on_new_survivors": Key("bool", True, "fail when a mutant the baseline's tests killed now survives (a weakened test)"),
        "ml_only": Key("bool", True, "count only ML operators' mutants for the survivor checks (mutmut's own are noisier)"),
    },
    "report": {
        "since": Key("str", "7d", "how far back the weekly report looks (e.g. 7d, 4w)"),
        "formats": Key("list[str]", ["html", "md", "json"], "report formats to write"),
        "history": Key("str", "8w", "how far back trend charts and rate trends look"),
        "top": Key("int", 10, "how many surviving mutants and slowest tests the report lists", least=1),
    },
}


# keys that no longer mean anything: read (so an old pyproject.toml still works), ignored, and reported
DEPRECATED: dict[str, dict[str, str]] = {
    "flaky": {
        "attribute_budget": "ignored: one budget ('budget') now covers detection and attribution; "
                            "'attribute_share' sets attribution's part of it",
    },
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "float?"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind.startswith("list["):
        item = kind[5:-1]
        return isinstance(value, list) and all(_type_ok(item, v) for v in value)
    raise AssertionError(f"unknown schema type {kind!r}")


class Config(SimpleNamespace):
    """Resolved settings: ``cfg.db``, ``cfg.flaky.budget``, ``cfg.mutate.operators``, ...

    ``root`` is the project folder and ``source`` the pyproject.toml read (or None); ``run_dir``
    is where pytest runs: the project itself, or a mirror of it (audit.scratch) for engines whose
    runs must not write into the user's tree (``run_dirs``: one mirror per parallel worker).
    """

    def section(self, name: str) -> SimpleNamespace:
        return getattr(self, name) if name else self

    def rooted(self, where) -> "Config":
        """The same settings for a copy of the project at *where* (a mirror, a Ray worker's copy)."""
        return Config(**{**vars(self), "root": Path(where), "run_dir": Path(where), "run_dirs": [Path(where)]})


def read_pyproject(path: Path) -> dict[str, Any]:
    """The ``[tool.audit]`` table of *path*, or ``{}`` when the file or the table is absent."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    table = data.get("tool", {}).get("audit", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.audit] must be a table")
    return table


def _checked(section: str, raw: dict[str, Any], where: str | None) -> dict[str, Any]:
    """*raw* checked against the schema (type and range); *where* names the file, None the command line."""
    schema = SCHEMA[section]
    prefix = f"tool.audit.{section}." if section else "tool.audit."
    out = {}
    for key, value in raw.items():
        if section == "" and key in SCHEMA and key:
            continue  # a sub-table, checked on its own
        if key in DEPRECATED.get(section, {}):
            if value is not None:
                out.setdefault("_deprecated", []).append(f"{where or 'command line'}: '{prefix}{key}' is deprecated "
                                                         f"and {DEPRECATED[section][key]}")
            continue
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(f"{where or 'command line'}: unknown key '{prefix}{key}' (known keys: {known})")
        kind = schema[key].type
        name = f"{where}: '{prefix}{key}'" if where else f"command line: --{key.replace('_', '-')} ('{prefix}{key}')"
        if not _type_ok(kind, value):
            raise ConfigError(f"{name} must be {kind.rstrip('?')}, got {type(value).__name__} {value!r}")
        problem = schema[key].bound_error(value)
        if problem:
            raise ConfigError(f"{name} {problem}, got {value!r}")
        out[key] = float(value) if kind in ("float", "float?") else value
    return out


def load_config(project: str | Path = ".", overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Defaults, then ``[tool.audit]`` of ``project/pyproject.toml``, then *overrides*.

    *overrides* maps a section name ("" for the top level) to key/value pairs; a value of None
    means "not given on the command line" and leaves the lower layer in force.
    """
    root = Path(project).resolve()
    pyproject = root / "pyproject.toml"
    table = read_pyproject(pyproject)
    where = str(pyproject)
    cfg = Config(root=root, run_dir=root, run_dirs=[root], source=pyproject if pyproject.is_file() else None,
                 deprecations=[])
    for section, keys in SCHEMA.items():
        values = {k: (list(v.default) if isinstance(v.default, list) else v.default) for k, v in keys.items()}
        raw = table if section == "" else table.get(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: 'tool.audit.{section}' must be a table")
        given = {k: v for k, v in (overrides or {}).get(section, {}).items() if v is not None}
        for layer in (_checked(section, raw, where), _checked(section, given, None)):
            cfg.deprecations += layer.pop("_deprecated", [])
            values.update(layer)
        if section:
            setattr(cfg, section, SimpleNamespace(**values))
        else:
            for k, v in values.items():
                setattr(cfg, k, v)
    return cfg


def documented_keys() -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, doc) for every setting, for the README and ``audit config``."""
    rows = []
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            dotted = f"{section}.{name}" if section else name
            rows.append((dotted, key.type, key.default, key.doc))
    return rows
