"""berth_sdk: the conveniences of berth's Rust SDK for policies written in
Python and built into WebAssembly components with componentize-py.

A policy is a settings dataclass and one ``evaluate`` function::

    from dataclasses import dataclass
    from berth_sdk import Settings, SettingsError, Verdict, export_plugin

    @dataclass
    class MySettings(Settings):
        label: str

        def validate(self):
            if not self.label:
                raise SettingsError("label", "must not be empty")

    def evaluate(request, settings):
        labels = (request.object().get("metadata") or {}).get("labels") or {}
        if settings.label in labels:
            return Verdict.allow()
        return Verdict.deny(f"label {settings.label} is required")

    # The component's exports: componentize-py looks for `WitWorld`.
    WitWorld = export_plugin(MySettings, evaluate)

The names are the Rust SDK's: Request (request.object(),
request.old_object(), request.require_kind()), Patch and pointer(), Verdict
(allow, deny, deny_with_code, mutate, with_warning), Settings and
SettingsError, PolicyError, log, and the name checks (check_label_key,
check_label_value, check_dns_subdomain). The contract is
plugins/wit/policy.wit.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import traceback
import typing
from typing import Any, Iterable, Optional, Union

try:  # Inside a component: the bindings componentize-py generates.
    import wit_world as _wit_world
    from componentize_py_types import Err as _Err
    from wit_world.imports import host as _host
    from wit_world.imports import types as _types
except ImportError:  # Natively (a test run with plain Python): no host.
    _wit_world = None
    _host = None
    _types = None

    class _Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value


__all__ = [
    "Allow",
    "Deny",
    "Mutate",
    "Patch",
    "PolicyError",
    "Request",
    "Settings",
    "SettingsError",
    "Verdict",
    "check_dns_subdomain",
    "check_label_key",
    "check_label_value",
    "export_plugin",
    "log",
    "pointer",
]


class PolicyError(Exception):
    """A policy error: ``evaluate`` could not reach a verdict (not a denial).
    berth applies the policy's failurePolicy to it."""

    @property
    def message(self) -> str:
        return str(self)


class SettingsError(Exception):
    """A rejected setting, with the field it concerns (``label.key``,
    ``tolerations[0].effect``); it reads ``settings.label.key: ...``."""

    def __init__(self, field: str, message: str):
        text = f"settings: {message}" if field in ("", ".") else f"settings.{field}: {message}"
        super().__init__(text)
        self.field = field

    @property
    def message(self) -> str:
        return str(self)


class _Log:
    """Logging to berth's log, tagged with the policy's name."""

    def _write(self, level: str, message: str) -> None:
        if _host is None:
            print(f"[{level}] {message}", file=sys.stderr)
        else:
            _host.log(getattr(_host.Level, level.upper()), str(message))

    def trace(self, message: str) -> None:
        self._write("trace", message)

    def debug(self, message: str) -> None:
        self._write("debug", message)

    def info(self, message: str) -> None:
        self._write("info", message)

    def warn(self, message: str) -> None:
        self._write("warn", message)

    def error(self, message: str) -> None:
        self._write("error", message)


log = _Log()

_UNSET = object()


class Request:
    """The AdmissionRequest a policy judges. Its objects come apart from it,
    as JSON text, and are parsed only when asked for, once."""

    def __init__(
        self,
        request: str,
        object: Optional[str] = None,
        old_object: Optional[str] = None,
        context: Any = None,
    ):
        try:
            fields = json.loads(request)
        except ValueError as err:
            raise PolicyError(f"invalid AdmissionRequest: {err}") from None
        self.uid: str = fields.get("uid", "")
        #: ``{"group", "version", "kind"}``; ``request.kind["kind"]`` is ``Pod``, say.
        self.kind: dict = {"group": "", **(fields.get("kind") or {})}
        self.resource: dict = {"group": "", **(fields.get("resource") or {})}
        self.sub_resource: Optional[str] = fields.get("subResource")
        self.name: Optional[str] = fields.get("name")
        self.namespace: Optional[str] = fields.get("namespace")
        #: ``CREATE``, ``UPDATE``, ``DELETE`` or ``CONNECT``.
        self.operation: str = fields.get("operation", "")
        self.user_info: dict = {"username": "", "groups": [], **(fields.get("userInfo") or {})}
        self.dry_run: bool = bool(fields.get("dryRun", False))
        #: What berth knows of the cluster, for a policy that asks for it in
        #: berth.yaml (``context:``): ``{"default_storage_class": ...}``.
        self.context: dict = {
            "default_storage_class": getattr(context, "default_storage_class", None)
            if not isinstance(context, dict)
            else context.get("default_storage_class")
        }
        self._texts = {"object": _present(object), "oldObject": _present(old_object)}
        self._parsed: dict = {}

    def has_object(self) -> bool:
        """Whether the request carries an object (it does not for DELETE)."""
        return self._texts["object"] is not None

    def object(self) -> Any:
        """The object being admitted, parsed on first use."""
        return self._parse("object")

    def old_object(self) -> Any:
        """The stored object, for UPDATE and DELETE."""
        return self._parse("oldObject")

    def require_kind(self, kind: str, plugin: str) -> None:
        """Raise a PolicyError unless the request is for a ``kind`` (``Pod``):
        ``<plugin> applies to Pods, not PersistentVolumeClaim``."""
        if self.kind.get("kind") != kind:
            raise PolicyError(f"{plugin} applies to {_plural(kind)}, not {self.kind.get('kind')}")

    def _parse(self, name: str) -> Any:
        if name not in self._parsed:
            text = self._texts[name]
            if text is None:
                raise PolicyError(f"{self.operation.capitalize()} request has no {name}")
            try:
                self._parsed[name] = json.loads(text)
            except ValueError as err:
                raise PolicyError(f"{name}: {err}") from None
        return self._parsed[name]


def _present(text: Optional[str]) -> Optional[str]:
    return None if text is None or text.strip() == "null" else text


def _plural(kind: str) -> str:
    """The English plural of a kind: Pods, Ingresses, NetworkPolicies."""
    if kind.endswith(("s", "x", "z", "ch", "sh")):
        return kind + "es"
    if kind.endswith("y") and not kind.endswith(("ay", "ey", "iy", "oy", "uy")):
        return kind[:-1] + "ies"
    return kind + "s"


def pointer(segments: Iterable[str]) -> str:
    """A JSON Pointer from raw segments, escaping ``~`` and ``/``:
    ``pointer(["metadata", "labels", "example.com/checked"])`` is
    ``/metadata/labels/example.com~1checked``."""
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in segments)


class Patch:
    """An RFC 6902 JSON Patch, built op by op against the object the policy
    was given. Each method returns the patch, so calls chain."""

    def __init__(self) -> None:
        #: The ops, as ``{"op", "path", "value"}`` dicts.
        self.ops: list = []

    def add(self, path: str, value: Any) -> "Patch":
        self.ops.append({"op": "add", "path": path, "value": value})
        return self

    def replace(self, path: str, value: Any) -> "Patch":
        self.ops.append({"op": "replace", "path": path, "value": value})
        return self

    def remove(self, path: str) -> "Patch":
        self.ops.append({"op": "remove", "path": path})
        return self

    def test(self, path: str, value: Any) -> "Patch":
        self.ops.append({"op": "test", "path": path, "value": value})
        return self

    def append(self, path: str, existing: int, items: Iterable[Any]) -> "Patch":
        """Append ``items`` to the array at ``path``, which holds ``existing``
        items now: one ``add`` of the whole array when it is absent or empty
        (a JSON Patch cannot append to an array that is not there), else one
        ``add <path>/-`` per item, so what is there is kept."""
        items = list(items)
        if not items:
            return self
        if existing == 0:
            return self.add(path, items)
        for item in items:
            self.add(f"{path}/-", item)
        return self

    def is_empty(self) -> bool:
        return not self.ops

    def to_json(self) -> str:
        """The patch as JSON text, as the WIT ``mutate`` carries it."""
        return json.dumps(self.ops, separators=(",", ":"), ensure_ascii=False)


@dataclasses.dataclass
class Allow:
    """Let the object through unchanged."""


@dataclasses.dataclass
class Deny:
    """Reject the object; ``message`` is shown to the user."""

    message: str
    code: int


@dataclasses.dataclass
class Mutate:
    """Change the object with ``patch``."""

    patch: Patch


class Verdict:
    """What a policy decided (``decision``: Allow, Deny or Mutate), with
    warnings for the user."""

    def __init__(self, decision: Union[Allow, Deny, Mutate]):
        self.decision = decision
        self.warnings: list = []

    @staticmethod
    def allow() -> "Verdict":
        return Verdict(Allow())

    @staticmethod
    def deny(message: str) -> "Verdict":
        """Deny with code 403."""
        return Verdict.deny_with_code(message, 403)

    @staticmethod
    def deny_with_code(message: str, code: int) -> "Verdict":
        return Verdict(Deny(str(message), code))

    @staticmethod
    def mutate(patch: Patch) -> "Verdict":
        """Mutate with ``patch``; an empty patch is an allow, so reinvocation
        over a policy's own output is visibly a no-op."""
        if patch.is_empty():
            return Verdict.allow()
        return Verdict(Mutate(patch))

    def with_warning(self, warning: str) -> "Verdict":
        """Add a warning for the user (keep it under 120 characters)."""
        self.warnings.append(str(warning))
        return self

    def is_allowed(self) -> bool:
        return not isinstance(self.decision, Deny)

    def patch(self) -> Optional[Patch]:
        """The patch of a mutation, else None."""
        return self.decision.patch if isinstance(self.decision, Mutate) else None

    def __repr__(self) -> str:
        return f"Verdict({self.decision!r}, warnings={self.warnings!r})"


# Checks for Kubernetes names and labels, for settings that name objects or
# labels (Rust: ``berth_sdk::names``). Each returns None when the name is
# good, else the problem, in the Rust SDK's words.

_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _utf8_length(text: str) -> int:
    """Lengths in UTF-8 bytes, as Rust counts them."""
    return len(text.encode("utf-8", "surrogatepass"))


def check_dns_subdomain(name: str) -> Optional[str]:
    """A DNS subdomain (RFC 1123), as most Kubernetes object names are
    (Secrets, StorageClasses, ...): None, or what is wrong."""
    if not name or _utf8_length(name) > 253:
        return "must have 1 to 253 characters"
    for label in name.split("."):
        if not label or label[0] not in _LOWER_ALNUM or label[-1] not in _LOWER_ALNUM:
            return "each '.'-separated part must start and end with a lowercase letter or digit"
        if not all(c in _LOWER_ALNUM or c == "-" for c in label):
            return "may have only lowercase letters, digits, '-' and '.'"
    return None


def check_label_key(key: str) -> Optional[str]:
    """A label key: an optional DNS-subdomain prefix and ``/``, then a name of
    1 to 63 alphanumerics, ``-``, ``_`` and ``.``, alphanumeric at both ends:
    None, or what is wrong."""
    prefix, slash, name = key.rpartition("/")
    if slash and check_dns_subdomain(prefix) is not None:
        return "its prefix (before '/') must be a DNS subdomain"
    if not name:
        return "must have a name (after any prefix)"
    if check_label_value(name) is not None:
        return "its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end"
    return None


def check_label_value(value: str) -> Optional[str]:
    """A label value: empty, or 1 to 63 alphanumerics, ``-``, ``_`` and
    ``.``, alphanumeric at both ends: None, or what is wrong."""
    inner = all(c in _ALNUM or c in "-_." for c in value)
    ends = not value or (value[0] in _ALNUM and value[-1] in _ALNUM)
    if _utf8_length(value) > 63 or not inner or not ends:
        return "must have at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end"
    return None


class Settings:
    """A policy's settings, from the ``settings`` of its berth.yaml entry.

    Subclass it as a ``@dataclass``; fields are typed with ``str``, ``int``,
    ``float``, ``bool``, ``Any``, ``list[T]``, ``dict[str, T]``,
    ``Optional[T]`` and other dataclasses. A field without a default is
    required, and a field the class does not declare is an error, as in the
    Rust SDK (serde's ``deny_unknown_fields``). Override ``validate`` to
    check what types cannot, raising a SettingsError."""

    @classmethod
    def parse(cls, text: str) -> "Settings":
        """Parse and validate settings JSON text into an instance."""
        try:
            value = json.loads(text)
        except ValueError as err:
            raise SettingsError("", f"invalid JSON: {err}") from None
        settings = _convert(cls, value, "")
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check what types cannot: ranges, non-empty lists, consistency."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _expected_fields(known: list) -> str:
    """As serde words it, so every language reads alike."""
    quoted = [f"`{k}`" for k in known]
    if not quoted:
        return "there are no fields"
    if len(quoted) == 1:
        return f"expected {quoted[0]}"
    if len(quoted) == 2:
        return f"expected {quoted[0]} or {quoted[1]}"
    return "expected one of " + ", ".join(quoted)


def _convert(tp: Any, value: Any, field: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``, or a SettingsError naming
    ``field``."""

    def wrong(expected: str) -> SettingsError:
        return SettingsError(field, f"invalid type: {_type_name(value)}, expected {expected}")

    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        inner = [a for a in args if a is not type(None)]
        if value is None and len(inner) < len(args):
            return None
        return _convert(inner[0] if len(inner) == 1 else Any, value, field)
    if origin is list:
        if not isinstance(value, list):
            raise wrong("a list")
        return [_convert(args[0] if args else Any, v, f"{field}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong("an object")
        inner = args[1] if len(args) == 2 else Any
        return {k: _convert(inner, v, f"{field}.{k}" if field else k) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong("an object")
        hints = typing.get_type_hints(tp)
        known = [f.name for f in dataclasses.fields(tp) if f.init]
        for name in value:
            if name not in known:
                raise SettingsError(f"{field}.{name}" if field else name, f"unknown field `{name}`, {_expected_fields(known)}")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            if f.name not in value:
                has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                if not has_default:
                    raise SettingsError(field, f"missing field `{f.name}`")
                continue
            kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{field}.{f.name}" if field else f.name)
        return tp(**kwargs)
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong("a boolean")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    raise TypeError(f"settings type {tp!r} at {field or 'settings'} is not supported")


# The last settings parsed, with their text. berth calls a warm instance
# with the same settings again and again, so they are parsed once per
# instance, not once per request. It holds only what the settings text
# determines: nothing of any request.
_last_settings: Optional[tuple] = None


def _parsed_settings(settings_class: type, text: str) -> Any:
    global _last_settings
    if _last_settings is None or _last_settings[0] is not settings_class or _last_settings[1] != text:
        _last_settings = (settings_class, text, settings_class.parse(text))
    return _last_settings[2]


def _guard(call):
    """A PolicyError or SettingsError becomes the WIT ``err`` (componentize-py
    raises ``Err(value)`` for it); anything else is a bug, logged at
    ``error`` and re-raised, a trap that berth reports as a panic."""
    try:
        return call()
    except (PolicyError, SettingsError) as err:
        raise _Err(str(err)) from None
    except _Err:
        raise
    except Exception as err:
        log.error(f"panic: {_describe(err)}")
        raise


def _describe(err: BaseException) -> str:
    """An exception as an author needs it: what, and the file and line it
    came from, on the first line (the one a shortened message keeps),
    then the whole traceback, with the files named as in the project."""
    summary = traceback.TracebackException.from_exception(err)
    # The innermost frame outside this module: the policy's own line.
    own = [frame for frame in summary.stack if frame.filename != __file__] or summary.stack
    _as_in_project(summary)
    where = f" ({own[-1].filename}, line {own[-1].lineno}, in {own[-1].name})" if own else ""
    text = "".join(summary.format()).rstrip()
    return f"{type(err).__name__}: {err}{where}\n{text}"


# componentize-py serves the project's directory to its Python as /0.
_MOUNT = re.compile(r"^/[0-9]+/")


def _as_in_project(summary: traceback.TracebackException) -> None:
    """Name each frame's file as the author knows it (``policy.py``, not
    ``/0/policy.py``), in the exception and those it was raised from."""
    pending = [summary]
    while pending:
        current = pending.pop()
        for frame in current.stack:
            frame.filename = _MOUNT.sub("", frame.filename)
        pending += [chained for chained in (current.__cause__, current.__context__) if chained is not None]


def _to_wit(verdict: Verdict) -> Any:
    decision = verdict.decision
    if _types is None:  # natively: plain values, for tests
        return verdict
    if isinstance(decision, Deny):
        wit = _types.Decision_Deny(_types.Denial(message=decision.message, code=decision.code))
    elif isinstance(decision, Mutate):
        wit = _types.Decision_Mutate(decision.patch.to_json())
    else:
        wit = _types.Decision_Allow()
    return _types.Verdict(decision=wit, warnings=list(verdict.warnings))


def export_plugin(settings_class: type, evaluate) -> type:
    """The component's exports from a settings class and an evaluate
    function ``(request, settings) -> Verdict`` (Rust: ``export_plugin!``).
    Bind the result to ``WitWorld`` in the policy's module, where
    componentize-py looks for it."""

    base = _wit_world.WitWorld if _wit_world is not None else object

    class WitWorld(base):  # type: ignore[misc, valid-type]
        def validate_settings(self, settings: str) -> None:
            _guard(lambda: _parsed_settings(settings_class, settings))

        def evaluate(self, request, object, old_object, settings, context):
            def call():
                parsed = _parsed_settings(settings_class, settings)
                verdict = evaluate(Request(request, object, old_object, context), parsed)
                if not isinstance(verdict, Verdict):
                    raise PolicyError(f"evaluate returned {type(verdict).__name__}, not a Verdict")
                return _to_wit(verdict)

            return _guard(call)

    return WitWorld
