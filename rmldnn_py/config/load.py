"""Read, validate and type a configuration file (SPEC §3).

:func:`load_config` is the only entry point. It

1. reads the file (unreadable → :class:`~rmldnn_py.errors.UsageError`, exit 2),
2. parses strict JSON (syntax error → :class:`~rmldnn_py.errors.ConfigError` with line and
   column),
3. normalises the document guided by ``schema.json``: enumerated values are matched ignoring
   case and replaced by their canonical spelling (``adam`` → ``Adam``), transform names are
   lower-cased, ``null`` values mean "use the default", unknown keys become warnings with a
   did-you-mean hint,
4. validates it against ``schema.json`` (JSON Schema draft 2020-12) and reports every error at
   once, one line, errors separated by ``"; "``,
5. runs the cross-key checks a schema cannot express well and converts the result into the frozen
   dataclasses of :mod:`rmldnn_py.config.types`.

The module deliberately imports neither torch nor anything that does (fast start-up, usable by
tools that only inspect configs).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any, Iterable, Optional

from jsonschema import Draft202012Validator

from ..errors import ConfigError, UsageError
from ..registry import closest
from .types import (CheckpointConfig, Config, DataConfig, DiscriminatorConfig,
                    EarlyStoppingConfig, LossConfig, OptimizerConfig, SchedulerConfig,
                    SlicerConfig, TransformSpec)

__all__ = ["load_config", "parse_config", "schema"]

_SCHEMA_FILE = Path(__file__).with_name("schema.json")

# Data types whose loaders accept ``slicers`` (SPEC §3.5).
_SLICER_TYPES = ("numpy", "hdf5")


# --------------------------------------------------------------------------------------------
# schema access
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The parsed ``schema.json`` (cached). Callers must not modify it."""
    with open(_SCHEMA_FILE, encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _resolve(sub: dict) -> dict:
    """Follow a local ``$ref`` (``#/$defs/<name>``); the schema only uses that form."""
    while isinstance(sub, dict) and "$ref" in sub:
        ref = sub["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref!r} in schema.json")
        sub = schema()["$defs"][ref[len("#/$defs/"):]]
    return sub


def _def(name: str) -> dict:
    return schema()["$defs"][name]


@functools.lru_cache(maxsize=1)
def _key_homes() -> dict[str, list[str]]:
    """Key name → JSON paths of the sections that define it (for "it belongs in ..." hints)."""
    homes: dict[str, list[str]] = {}
    sections = {
        "neural_network": "neural_network",
        "data": "neural_network.data",
        "optimizer": "neural_network.optimizer",
        "lr_scheduler": "neural_network.optimizer.lr_scheduler",
        "loss": "neural_network.loss",
        "checkpoints": "neural_network.checkpoints",
    }
    for name, where in sections.items():
        for key in _def(name).get("properties", {}):
            homes.setdefault(key, []).append(where)
    return homes


# --------------------------------------------------------------------------------------------
# small formatting helpers
# --------------------------------------------------------------------------------------------

def _json_path(parts: Iterable[Any]) -> str:
    """``["neural_network", "data", "transforms", 2]`` → ``neural_network.data.transforms[2]``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def _show(value: Any) -> str:
    """A short, JSON-like rendering of a received value for error messages."""
    if isinstance(value, list):
        text = json.dumps(value)
        return text if len(text) <= 40 else f"a list of {len(value)} values"
    if isinstance(value, dict):
        text = json.dumps(value)
        return text if len(text) <= 40 else "an object"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + '..."'


def _num(value: Any) -> str:
    """Format a schema bound (``0`` rather than ``0.0``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _type_words(types: Any) -> str:
    if isinstance(types, str):
        types = [types]
    words = [_TYPE_WORDS.get(t, t) for t in types]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _prefix(path: str, where: str) -> str:
    return f"{path}: {where}: " if where else f"{path}: "


# --------------------------------------------------------------------------------------------
# reading and parsing
# --------------------------------------------------------------------------------------------

class _BadConstant(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> Any:
    raise _BadConstant(name)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


MAX_JSON_DEPTH = 100
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def check_json_depth(text: str, path: str, error_cls: type = ConfigError,
                     limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON text whose arrays/objects nest deeper than ``limit`` levels (a config or a
    Keras model is a few levels deep; 100k levels would exhaust Python's recursion limit in
    ``json``, ``copy`` and the schema validator).

    Raises:
        error_cls: ``<path>: invalid JSON at line L, column C: nested more than 100 levels
            deep``.
    """
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            if depth > limit:
                line, col = _line_col(text, m.start())
                raise error_cls(f"{path}: invalid JSON at line {line}, column {col}: nested "
                                f"more than {limit} levels deep")
        elif tok in "]}":
            depth -= 1


def _parse(text: str, path: str, warnings: list[str]) -> Any:
    """Strict JSON (no NaN/Infinity); duplicate keys are warned about (the last one wins);
    nesting deeper than :data:`MAX_JSON_DEPTH` levels is an error."""
    check_json_depth(text, path)

    def pairs(items: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in items:
            if key in out:
                warnings.append(f"{path}: duplicate key '{key}'; the last value is used")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: "
                          f"{e.msg}") from None
    except RecursionError:  # pragma: no cover - check_json_depth refuses this first
        raise ConfigError(f"{path}: invalid JSON: nested too deeply") from None
    except _BadConstant as e:
        m = re.search(r"-?\b" + re.escape(e.name.lstrip("-")) + r"\b", text)
        line, col = _line_col(text, m.start()) if m else (1, 1)
        raise ConfigError(f"{path}: invalid JSON at line {line}, column {col}: "
                          f"'{e.name}' is not a JSON number") from None


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        reason = e.strerror or str(e)
        raise UsageError(f"{path}: cannot read config file: {reason}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, col = _line_col(raw[: e.start].decode("utf-8", "replace"), e.start)
        raise ConfigError(f"{path}: invalid JSON at line {line}, column {col}: "
                          f"the file is not UTF-8 text") from None


# --------------------------------------------------------------------------------------------
# normalisation (case-insensitive enums, null = default, unknown keys → warnings)
# --------------------------------------------------------------------------------------------

def _normalise(node: Any, sub: dict, parts: list, path: str, warnings: list[str],
               unknown: dict[tuple, list[str]], typos: Optional[list] = None) -> Any:
    """Return a normalised copy of ``node`` guided by the schema ``sub``; unknown keys are
    recorded in ``unknown`` (JSON path tuple → key names); those close to a valid key of their
    section (``input_paht``) go to ``typos`` as ``(json path, key, valid key)``, the others are
    appended to ``warnings``."""
    sub = _resolve(sub)
    if isinstance(node, str) and sub.get("x-case-insensitive") and "enum" in sub:
        canonical = {v.lower(): v for v in sub["enum"]}
        return canonical.get(node.lower(), node)
    if isinstance(node, dict) and "properties" in sub:
        props = sub["properties"]
        named_by_key = "propertyNames" in sub   # e.g. a transform entry: the key is the name
        out: dict = {}
        for key, value in node.items():
            if sub.get("x-lowercase-keys"):
                key = key.lower()
            if named_by_key:
                out[key] = _normalise(value, props[key], parts + [key], path, warnings,
                                      unknown, typos) if key in props else value
                continue
            if value is None:           # null = "not given"
                continue
            if key in props:
                out[key] = _normalise(value, props[key], parts + [key], path, warnings, unknown,
                                      typos)
            else:
                hint = closest(key, list(props))
                if hint is not None and typos is not None:
                    typos.append((_json_path(parts + [key]), key, hint))
                else:
                    warnings.append(_unknown_key_warning(path, parts, key, list(props)))
                unknown.setdefault(tuple(parts), []).append(key)
        return out
    if isinstance(node, list) and "items" in sub:
        return [_normalise(v, sub["items"], parts + [i], path, warnings, unknown, typos)
                for i, v in enumerate(node)]
    return node


def _unknown_key_warning(path: str, parts: list, key: str, candidates: list[str]) -> str:
    where = _json_path(parts + [key])
    msg = f"{path}: unknown key '{where}' ignored"
    hint = closest(key, candidates)
    if hint:
        return msg + f". Did you mean '{hint}'?"
    section = _json_path(parts)
    homes = [h for h in _key_homes().get(key, []) if h != section]
    if homes:
        return msg + f" (it belongs in '{homes[0]}')"
    return msg


# --------------------------------------------------------------------------------------------
# schema validation and friendly messages
# --------------------------------------------------------------------------------------------

def _message(e: Any, unknown: dict[tuple, list[str]]) -> str:
    """A friendly one-line message for one jsonschema ``ValidationError``."""
    v, sub, inst = e.validator, e.schema if isinstance(e.schema, dict) else {}, e.instance
    custom = sub.get("x-message", {})
    if v in custom:
        return custom[v]
    if v == "type":
        return f"expected {_type_words(e.validator_value)}, received {_show(inst)}"
    if v == "enum":
        values = list(e.validator_value)
        kind = sub.get("x-kind")
        listing = ", ".join(str(x) for x in values)
        shown = f"'{inst}'" if isinstance(inst, str) else _show(inst)
        msg = (f"unknown {kind} {shown}" if kind else f"invalid value {shown}")
        msg += f" (expected one of: {listing})"
        hint = closest(str(inst), [str(x) for x in values]) if isinstance(inst, str) else None
        return msg + (f". Did you mean '{hint}'?" if hint else "")
    if v == "required":
        missing = e.message.split("'")[1] if "'" in e.message else e.message
        reason = sub.get("x-reason")
        near = closest(missing, unknown.get(tuple(e.absolute_path), []))
        if near:
            reason = f"found unknown key '{near}'" + (f"; {reason}" if reason else "")
        return f"missing required key '{missing}'" + (f" ({reason})" if reason else "")
    if v == "minimum":
        return f"must be at least {_num(e.validator_value)}, received {_show(inst)}"
    if v == "exclusiveMinimum":
        return f"must be greater than {_num(e.validator_value)}, received {_show(inst)}"
    if v == "maximum":
        return f"must be at most {_num(e.validator_value)}, received {_show(inst)}"
    if v == "exclusiveMaximum":
        return f"must be less than {_num(e.validator_value)}, received {_show(inst)}"
    if v in ("minItems", "maxItems"):
        lo, hi = sub.get("minItems"), sub.get("maxItems")
        n = len(inst) if isinstance(inst, list) else 0
        if lo is not None and lo == hi:
            need = f"exactly {lo} value" + ("s" if lo != 1 else "")
        elif v == "minItems":
            need = f"at least {lo} value" + ("s" if lo != 1 else "")
        else:
            need = f"at most {hi} value" + ("s" if hi != 1 else "")
        return f"expected {need}, received {n}"
    if v == "minLength":
        return "must not be empty"
    if v in ("minProperties", "maxProperties"):
        return f"expected {'at least' if v == 'minProperties' else 'at most'} " \
               f"{e.validator_value} key(s), received {len(inst)}"
    return e.message.replace("\n", " ")


def _doc_order(doc: Any, parts: Iterable[Any]) -> tuple:
    """Position of a JSON path in the document (keys in file order; missing keys sort last)."""
    order = []
    node = doc
    for p in parts:
        if isinstance(node, dict):
            keys = list(node)
            order.append(keys.index(p) if p in node else len(keys))
            node = node.get(p)
        elif isinstance(node, list) and isinstance(p, int):
            order.append(p)
            node = node[p] if 0 <= p < len(node) else None
        else:
            order.append(0)
            node = None
    return tuple(order)


def _schema_errors(doc: Any, path: str, unknown: dict[tuple, list[str]]) -> list[str]:
    errors = list(_validator().iter_errors(doc))
    # one problem per location: a wrong type makes every other complaint about it noise
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    kept = [e for e in errors if e.validator == "type" or tuple(e.absolute_path) not in typed]
    kept.sort(key=lambda e: _doc_order(doc, e.absolute_path))
    out: list[str] = []
    for e in kept:
        line = _prefix(path, _json_path(e.absolute_path)) + _message(e, unknown)
        if line not in out:
            out.append(line)
    return out


# --------------------------------------------------------------------------------------------
# conversion to the typed dataclasses (+ cross-key checks)
# --------------------------------------------------------------------------------------------

def _coerce(value: Any, sub: dict) -> Any:
    """Integers as ``int`` (JSON ``2.0`` is an integer), numbers as ``float``, lists
    element-wise."""
    sub = _resolve(sub)
    t = sub.get("type")
    if isinstance(value, bool):
        return value
    if t == "integer" and isinstance(value, (int, float)):
        return int(value)
    if t == "number" and isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and isinstance(sub.get("items"), dict):
        return [_coerce(v, sub["items"]) for v in value]
    return value


def _typed(section: dict, name: str, key: str, default: Any = None) -> Any:
    """``section[key]`` coerced with the schema of ``$defs/name``, or ``default``."""
    if key not in section:
        return default
    return _coerce(section[key], _def(name)["properties"][key])


def _options(section: dict, name: str, type_name: str, where: str, path: str,
             warnings: list[str]) -> dict:
    """The keys of ``section`` that the chosen type uses, coerced; the others are warned about."""
    sub = _def(name)
    used = set(sub["x-type-keys"].get(type_name, ()))
    common = set(sub["x-common-keys"])
    kind = sub["x-kind"]
    out: dict = {}
    for key, value in section.items():
        if key in common:
            continue
        if key in used:
            out[key] = _coerce(value, sub["properties"][key])
        else:
            warnings.append(f"{path}: key '{where}.{key}' is not used by {kind} '{type_name}' "
                            f"and is ignored")
    return out


def _tuple(value: Optional[list]) -> Optional[tuple]:
    return None if value is None else tuple(value)


def _transforms(data: dict, key: str) -> tuple[TransformSpec, ...]:
    specs = []
    for i, entry in enumerate(data.get(key, ())):
        (name, value), = entry.items()
        specs.append(TransformSpec(name=name, value=value,
                                   where=f"neural_network.data.{key}[{i}]"))
    return tuple(specs)


def _slicers(data: dict, input_type: Optional[str], path: str, errors: list[str]) -> tuple:
    entries = data.get("slicers") or []
    if entries and input_type not in _SLICER_TYPES:
        errors.append(f"{_prefix(path, 'neural_network.data.slicers')}slicers need data type "
                      f"'numpy' or 'hdf5', not {_show(input_type)}")
    out = []
    seen: dict[str, int] = {}
    for k, s in enumerate(entries):
        where = f"neural_network.data.slicers[{k}]"
        sizes = tuple(int(v) for v in s["sizes"])
        for key in ("padding", "padded_sizes", "strides"):
            if key in s and len(s[key]) != len(sizes):
                errors.append(f"{_prefix(path, where + '.' + key)}expected {len(sizes)} values "
                              f"(one per entry of 'sizes'), received {len(s[key])}")
        if "padded_sizes" in s and any(int(p) < q for p, q in zip(s["padded_sizes"], sizes)):
            errors.append(f"{_prefix(path, where + '.padded_sizes')}each padded size must be at "
                          f"least the slice size {list(sizes)}, received {s['padded_sizes']}")
        name = s.get("name", f"slice_set_{k + 1}")
        if name in seen:
            errors.append(f"{_prefix(path, where + '.name')}duplicate slice-set name '{name}' "
                          f"(also used by slicers[{seen[name]}])")
        seen.setdefault(name, k)
        ints = lambda key: _tuple([int(v) for v in s[key]]) if key in s else None  # noqa: E731
        out.append(SlicerConfig(name=name, sizes=sizes, padding=ints("padding"),
                                padded_sizes=ints("padded_sizes"), strides=ints("strides"),
                                discard_remainders=bool(s.get("discard_remainders", False)),
                                transpose=bool(s.get("transpose", False))))
    return tuple(out)


def _data_config(data: dict, path: str, errors: list[str]) -> DataConfig:
    g = functools.partial(_typed, data, "data")
    type_ = data.get("type")
    input_type = data.get("input_type", type_)
    target_type = data.get("target_type")
    if target_type is None:
        if type_ is not None:
            target_type = type_
        elif input_type == "mnist":
            target_type = "mnist"
        elif "target_path" in data or "test_target_path" in data:
            target_type = input_type
    if input_type is None:
        errors.append(f"{_prefix(path, 'neural_network.data')}missing required key 'type' "
                      f"(or 'input_type'): which loader reads the inputs")
    if type_ is not None and "input_type" in data and data["input_type"] != type_:
        errors.append(f"{_prefix(path, 'neural_network.data.input_type')}'{data['input_type']}' "
                      f"contradicts 'type': '{type_}' (type sets both input_type and "
                      "target_type; give one of them)")
    if target_type == "labels":
        for key in ("target_path", "test_target_path"):
            if key in data:
                errors.append(f"{_prefix(path, 'neural_network.data.' + key)}'target_type': "
                              "'labels' takes the classes from the input folder names, so a "
                              f"'{key}' contradicts it (remove one of them)")

    test_tag = data.get("test_tag")
    if "testing_tag" in data:
        if test_tag is not None and test_tag != data["testing_tag"]:
            errors.append(f"{_prefix(path, 'neural_network.data')}'test_tag' and its alias "
                          f"'testing_tag' are both given with different values")
        test_tag = data["testing_tag"]

    bc = data.get("bc_frequency")
    if bc is not None and bc[0] > bc[1]:
        errors.append(f"{_prefix(path, 'neural_network.data.bc_frequency')}expected "
                      f"[c_min, c_max] with c_min <= c_max, received {_show(bc)}")

    grayscale = bool(data.get("grayscale", False))
    return DataConfig(
        type=type_,
        input_type=input_type,
        target_type=target_type,
        input_path=data.get("input_path"),
        target_path=data.get("target_path"),
        test_input_path=data.get("test_input_path"),
        test_target_path=data.get("test_target_path"),
        test_output_path=data.get("test_output_path"),
        batch_size=g("batch_size", 64),
        test_batch_size=g("test_batch_size", 64),
        preload=bool(data.get("preload", False)),
        target_is_mask=bool(data.get("target_is_mask", False)),
        transforms=_transforms(data, "transforms"),
        input_transforms=_transforms(data, "input_transforms"),
        target_transforms=_transforms(data, "target_transforms"),
        slicers=_slicers(data, input_type, path, errors),
        hdf5_outfile=data.get("hdf5_outfile"),
        hdf5_precision=data.get("hdf5_precision", "single"),
        grayscale=grayscale,
        input_grayscale=bool(data.get("input_grayscale", grayscale)),
        target_grayscale=bool(data.get("target_grayscale", grayscale)),
        training_tag=data.get("training_tag"),
        test_tag=test_tag,
        domain_size=g("domain_size"),
        num_examples=g("num_examples"),
        num_test_examples=g("num_test_examples"),
        bc_frequency=_tuple(g("bc_frequency")),
        bc_type=data.get("bc_type", "random_uniform"),
        bc_num_terms=g("bc_num_terms", 1),
        num_workers=g("num_workers"),
        test_output_format=data.get("test_output_format", "h5"),
        max_image_pixels=g("max_image_pixels", 178956970),
        letterbox=bool(data.get("letterbox", False)),
        class_names=data.get("class_names"),
    )


def _optimizer_config(opt: Optional[dict], path: str, warnings: list[str],
                      where: str = "neural_network.optimizer") -> Optional[OptimizerConfig]:
    if opt is None:
        return None
    scheduler = None
    sched = opt.get("lr_scheduler")
    if sched is not None:
        scheduler = SchedulerConfig(
            type=sched["type"],
            verbose=bool(sched.get("verbose", True)),
            options=_options(sched, "lr_scheduler", sched["type"], where + ".lr_scheduler",
                             path, warnings))
    clip = opt.get("clip_grad_norm")
    return OptimizerConfig(type=opt["type"],
                           options=_options(opt, "optimizer", opt["type"], where, path, warnings),
                           lr_scheduler=scheduler,
                           clip_grad_norm=float(clip) if clip is not None else None)


def _loss_config(loss: Optional[dict], path: str, warnings: list[str]) -> Optional[LossConfig]:
    if loss is None:
        return None
    return LossConfig(function=loss["function"],
                      options=_options(loss, "loss", loss["function"], "neural_network.loss",
                                       path, warnings))


def _build(nn: dict, path: str, warnings: list[str]) -> Config:
    errors: list[str] = []
    data = _data_config(nn["data"], path, errors)

    trains = data.input_path is not None or (data.input_type == "pde"
                                             and data.num_examples is not None)
    if trains:
        why = ("'neural_network.data.input_path' is set" if data.input_path is not None
               else "'neural_network.data.num_examples' is set")
        for key in ("optimizer", "loss"):
            if key not in nn:
                errors.append(f"{_prefix(path, 'neural_network')}missing required key '{key}' "
                              f"(training runs because {why})")
    if errors:
        raise _error(errors, warnings)

    ck = nn.get("checkpoints", {})
    g = functools.partial(_typed, nn, "neural_network")
    return Config(
        path=path,
        layers=nn["layers"],
        data=data,
        outfile=nn.get("outfile"),
        num_epochs=g("num_epochs", 1),
        optimizer=_optimizer_config(nn.get("optimizer"), path, warnings),
        loss=_loss_config(nn.get("loss"), path, warnings),
        checkpoints=CheckpointConfig(save=ck.get("save"),
                                     interval=_typed(ck, "checkpoints", "interval", 1),
                                     load=ck.get("load"),
                                     resume=ck.get("resume", False),
                                     best=ck.get("best")),
        debug=bool(nn.get("debug", False)),
        debug_interval=g("debug_interval", 1),
        mixed_precision=nn.get("mixed_precision", "none"),
        channels_last=bool(nn.get("channels_last", False)),
        compile=bool(nn.get("compile", False)),
        seed=g("seed", 0),
        early_stopping=_early_stopping(nn.get("early_stopping")),
        progress=bool(nn.get("progress", True)),
        tensorboard=nn.get("tensorboard"),
        discriminator=_discriminator(nn.get("discriminator"), path, warnings),
    )


def _early_stopping(es: Optional[dict]) -> Optional[EarlyStoppingConfig]:
    if es is None:
        return None
    return EarlyStoppingConfig(monitor=es.get("monitor", "loss"),
                               patience=int(es.get("patience", 5)),
                               min_delta=float(es.get("min_delta", 0.0)))


def _discriminator(disc: Optional[dict], path: str,
                   warnings: list[str]) -> Optional[DiscriminatorConfig]:
    if disc is None:
        return None
    return DiscriminatorConfig(layers=disc["layers"],
                               optimizer=_optimizer_config(disc.get("optimizer"), path, warnings,
                                                         "neural_network.discriminator.optimizer"),
                               checkpoint=disc.get("checkpoint"))


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------

def parse_config(doc: Any, path: str = "<config>") -> tuple[Config, list[str]]:
    """Validate and type an already parsed config document (the JSON object of a config file).

    Args:
        doc: the parsed JSON (not modified).
        path: name used as the prefix of every message.

    Returns:
        ``(config, warnings)``; each warning is one line starting with ``path``.

    Raises:
        ConfigError: the document is invalid; the message lists every problem found, separated
            by ``"; "``. The warnings gathered before the failure are in its ``warnings``
            attribute (a list of strings), e.g. an unknown key that explains a missing one.
    """
    warnings: list[str] = []
    unknown: dict[tuple, list[str]] = {}
    typos: list[tuple[str, str, str]] = []
    doc = _normalise(copy.deepcopy(doc), schema(), [], path, warnings, unknown, typos)
    errors = _schema_errors(doc, path, unknown)
    for where, key, hint in typos:   # a misspelt key would be ignored: refuse it (issue 10)
        if not any(f"unknown key '{key}'" in e for e in errors):
            errors.append(f"{path}: {where}: unknown key '{key}'; did you mean '{hint}'? "
                          "(a misspelt key would be ignored)")
    if errors:
        raise _error(errors, warnings)
    return _build(doc["neural_network"], path, warnings), warnings


def _error(errors: list[str], warnings: list[str]) -> ConfigError:
    """One ConfigError for all ``errors``; the warnings gathered so far ride along as
    ``.warnings`` so that a caller may print them too."""
    err = ConfigError("; ".join(errors))
    err.warnings = list(warnings)  # type: ignore[attr-defined]
    return err


def load_config(path: str) -> tuple[Config, list[str]]:
    """Read, validate and type the configuration file ``path`` (SPEC §3).

    Enumerated values (optimizer ``type``, loss ``function`` and ``source``, scheduler ``type``,
    data ``type``/``input_type``/``target_type``, ``bc_type``, ``hdf5_precision``,
    ``mixed_precision``) are matched ignoring case and returned in their canonical spelling.
    Unknown keys do not fail the run; they are returned as warnings
    (``"config.json: unknown key 'neural_network.data.bath_size' ignored. Did you mean
    'batch_size'?"``) and left out of the typed config.

    Args:
        path: the config file as given on the command line; relative to the current directory.

    Returns:
        ``(config, warnings)``: the typed :class:`~rmldnn_py.config.types.Config` and a list of
        one-line warning strings to print.

    Raises:
        UsageError: the file cannot be read (exit code 2).
        ConfigError: invalid JSON (with line and column) or invalid content; every schema error
            is reported at once in one line, e.g. ``config.json:
            neural_network.optimizer.learning_rate: expected a number, received "fast"``.
            Its ``warnings`` attribute holds the warnings gathered before the failure.
    """
    text = _read(path)
    warnings: list[str] = []
    doc = _parse(text, path, warnings)
    try:
        config, more = parse_config(doc, path)
    except ConfigError as e:
        e.warnings = warnings + getattr(e, "warnings", [])  # type: ignore[attr-defined]
        raise
    return config, warnings + more
