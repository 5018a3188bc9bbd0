"""Load a pipeline file into frozen definitions, with errors that say exactly what to fix.

Every message names the file, the field path, the bad value and what is allowed, for example::

    pipeline.yaml: tables.user.aggregations.clicks_7d.window: '7x' is not a duration; use a whole
    number with a unit ms, s, m, h, d or w (e.g. 15m, 24h, 7d)
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from clickwise.errors import PipelineError
from clickwise.spec.pipeline import CrossReferenceError, Pipeline


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line {line})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline file. Raises :class:`PipelineError` naming what to fix."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{file}: no such pipeline file; pass one with -p/--pipeline") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{file}: cannot read the pipeline file: {exc}") from exc
    return parse_pipeline(
        text, source=str(file), folder=file.resolve().parent
    )  # (links: the target's folder)


def parse_pipeline(text: str, *, source: str = "<pipeline>", folder: Path | None = None) -> Pipeline:
    """Validate pipeline text (YAML or JSON). ``source`` names it in error messages.

    ``extends: OTHER.yaml`` (relative to ``folder``, the file's own folder) starts from another
    pipeline file: mappings of this one are merged into it key by key, anything else replaces.
    """
    data = _read_mapping(text, source, folder, seen=())
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        raise PipelineError(_describe(exc, data, source)) from exc


def _read_mapping(text: str, source: str, folder: Path | None, seen: tuple[Path, ...]) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PipelineError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PipelineError(
            f"{source}: the top level must be a mapping with 'name' and 'streams', got {data!r:.80}"
        )
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or folder is None:
        raise PipelineError(f"{source}: extends: give the path of another pipeline file, got {base_name!r}")
    base_file = (folder / base_name).resolve()
    if base_file in seen:
        raise PipelineError(f"{source}: extends: {base_name} extends this file again (a cycle)")
    try:
        base_text = base_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"{source}: extends: cannot read {base_file}: {exc}") from exc
    base = _read_mapping(base_text, str(base_file), base_file.parent, (*seen, base_file))
    return _merged(base, data)


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def _describe(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    lines = []
    for error in exc.errors():
        location = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, CrossReferenceError):
            location = (*location, *cause.path)
        path = _clean_path(location, data)
        lines.append(f"{source}: {path or '(top level)'}: {_message(error, cause, path, data)}")
    return "\n".join(lines)


def _clean_path(location: tuple[Any, ...], data: dict[str, Any]) -> str:
    """Drop the union tags pydantic inserts (``geo``, ``table``) that are not keys in the file."""
    parts: list[str] = []
    node: Any = data
    for part in location:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and part in ("table", "event", "derived", "geo", "agent", "str", "int"):
            continue
        else:
            node = None
        parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[")


def _message(error: Any, cause: Any, path: str, data: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(tuple(error["loc"])[:-1])
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {error['loc'][-1]!r}{hint}"
    if kind == "missing":
        return "required but missing"
    if cause is not None:
        return str(cause)
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("literal_error", "enum"):
        return f"{value!r} is not allowed; {message[0].lower()}{message[1:]}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return f"{message} (got {value!r})"
    return message


def _allowed_keys(location: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``location`` accepts, found by walking the type annotations."""
    current: Any = Pipeline
    for part in location:
        current = _step(current, part)
        if current is None:
            return []
    model = _as_model(current)
    return list(model.model_fields) if model is not None else []


def _step(annotation: Any, part: Any) -> Any:
    model = _as_model(annotation)
    if model is not None:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else _union_member(annotation, part)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _step(args[0], part)
    if origin in (dict, list) and args:
        return args[-1]
    if origin in (typing.Union, types.UnionType):
        return _union_member(annotation, part)
    return None


def _union_member(annotation: Any, tag: Any) -> Any:
    for member in _flatten(annotation):
        model = _as_model(member)
        if model is None:
            continue
        kind = model.model_fields.get("kind")
        literal = typing.get_args(kind.annotation) if kind is not None else ()
        if tag in literal or model.__name__.lower().startswith(str(tag)):
            return model
    return None


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _flatten(arg)]
    return [annotation]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is typing.Annotated:
        return _as_model(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [m for m in _flatten(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    return members[0] if len(members) == 1 else None


def pipeline_json_schema() -> dict[str, Any]:
    """The JSON Schema of pipeline files, for editors (``clickwise schema``)."""
    schema = Pipeline.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "clickwise pipeline"
    return schema
