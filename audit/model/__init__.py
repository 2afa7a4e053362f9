"""The results model: what the engines produce and every reader (store, reporters, review) reads.

Plain dataclasses with ``to_json``/``from_json``, importing nothing but the standard library and
each other, so reading a result never loads an engine. The JSON they write is described by the
schemas shipped in ``audit/schemas/`` (see :func:`audit.model.schema.validate`).
"""
