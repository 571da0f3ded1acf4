"""The config schema as a flat list of overridable fields, with their docstrings.

Every field of the frozen config dataclasses is followed by a string literal documenting it.
Python keeps no such attribute docstrings at run time, so they are read from the source with
``ast``. ``robofume <command> --help`` lists these fields (``--learner.utd_ratio`` ...).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldDoc:
    """One overridable config field."""

    path: str
    """Dotted name as given on the command line: ``learner.utd_ratio``."""
    type: Any
    """The annotated type."""
    default: Any
    """The schema's default (a preset may set another value)."""
    doc: str
    """The field's docstring, whitespace collapsed ("" when it has none)."""
    concern: type | None = None
    """The dataclass that declares the field, when its section is assembled from several
    (``learner``: the Cal-QL objective, the training schedule, the hardware); else None."""

    @property
    def section(self) -> str:
        """The dotted path of the dataclass holding the field ("" at the top level)."""
        return self.path.rpartition(".")[0]


@functools.cache
def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass (and its dataclass bases), read from its source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source (frozen app, REPL): no docstrings
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def class_doc(cls: type) -> str:
    """The first paragraph of a class docstring, whitespace collapsed."""
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n")[0].split())


def config_fields(cls: type, prefix: str = "", default: Any = None) -> list[FieldDoc]:
    """Every leaf field of the (nested) config dataclass ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    instance = default if default is not None else cls()
    out: list[FieldDoc] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        value = getattr(instance, f.name)
        path = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.extend(config_fields(tp, f"{path}.", value))
        else:
            out.append(
                FieldDoc(path, tp, value, docs.get(f.name, ""), declaring_class(cls, f.name))
            )
    return out


def declaring_class(cls: type, name: str) -> type | None:
    """The dataclass base of ``cls`` that declares field ``name`` (None: ``cls`` itself)."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return None if klass is cls else klass
    return None


@functools.cache
def experiment_fields() -> tuple[FieldDoc, ...]:
    """:func:`config_fields` of the whole :class:`ExperimentConfig` (computed once)."""
    from robofume.config import ExperimentConfig

    return tuple(config_fields(ExperimentConfig))


def section_classes(cls: type, prefix: str = "") -> dict[str, type]:
    """``{dotted section: dataclass}`` for ``cls`` ("") and every nested config dataclass."""
    out = {prefix.rstrip("."): cls}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(section_classes(tp, f"{prefix}{f.name}."))
    return out


def type_name(tp: Any) -> str:
    """A short metavar for a field type: INT, FLOAT, BOOL, STR, {a,b}, LIST, MAP."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "{" + ",".join(str(v) for v in typing.get_args(tp)) + "}"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return "|".join(type_name(a) for a in args)
    if origin in (tuple, list):
        return "LIST"
    if origin is dict or tp is dict:
        return "MAP"
    if tp in (int, float, bool, str):
        return tp.__name__.upper()
    return "VALUE"


def format_default(value: Any) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" or value != value.strip() else value
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_default(v)}" for k, v in value.items()) + "}"
    return str(value)
