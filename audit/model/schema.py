"""The JSON Schemas of the results ml-audit writes, shipped in ``audit/schemas/``, and a validator."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

NAMES = {"ml-audit.flaky": "flaky.schema.json", "ml-audit.mutate": "mutate.schema.json"}


@lru_cache(maxsize=None)
def load(kind: str) -> dict:
    """The schema for *kind* (``ml-audit.flaky`` or ``ml-audit.mutate``) as a dict."""
    return json.loads(resources.files("audit").joinpath("schemas", NAMES[kind]).read_text(encoding="utf-8"))


def validate(data: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless *data* matches the schema its ``schema`` field names."""
    import jsonschema

    kind = str(data.get("schema", "")).split("/", 1)[0]
    if kind not in NAMES:
        raise jsonschema.ValidationError(f"unknown schema {data.get('schema')!r}")
    jsonschema.validate(data, load(kind), cls=jsonschema.Draft202012Validator)
