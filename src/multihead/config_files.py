"""Config files as mappings: YAML (without aliases) or TOML, and ``--set key=value`` overrides.

Errors are :class:`~multihead.errors.ConfigError` lines that name the file, the line and what the parser found.
YAML aliases are refused: a few hundred bytes of nested aliases expand to gigabytes wherever the values are
copied, printed or saved (the "billion laughs"), and a config has no need of them. Deep nesting is refused too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from multihead.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["apply_overrides", "read_config_file"]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``3e-4`` as a string; this loader reads it as the float everyone means.

    Aliases (``*name``) are refused: a few hundred bytes of nested aliases expand to gigabytes wherever the
    values are copied, printed or saved (the "billion laughs"), and a config has no need of them.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"found the alias *{str(event.anchor)[:40]}; aliases (and "
                                              "<<: merges) are not allowed in a config: write the values out",
                                              event.start_mark)
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+"
               r"(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars: numbers, true/false, null, lists)."""
    result = {key: dict(value) if isinstance(value, dict) else value for key, value in values.items()}
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"--set {override!r:.80}: expected key=value, e.g. training.lr=3e-4")
        key, raw = override.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) > 2 or not all(parts):
            raise ConfigError(f"--set {override!r:.80}: keys are 'name' or 'section.name', got {key!r:.80}")
        value = _parse_value(raw, override) if raw.strip() else ""
        if len(parts) == 1:
            result[parts[0]] = value
        else:
            section = result.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ConfigError(f"--set {override!r:.80}: {parts[0][:80]} is not a section")
            section[parts[1]] = value
    return result


def _parse_value(raw: str, override: str) -> Any:
    """The value of ``--set key=VALUE``, read as YAML (numbers, true/false, null, lists)."""
    try:
        return yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {override!r:.80}: the value is not valid YAML ({_yaml_problem(error)})") from None
    except RecursionError:
        raise ConfigError(f"--set {override!r:.80}: the value is nested too deeply") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error: what the parser found."""
    return " ".join(str(getattr(error, "problem", None) or error).split())[:160]


def _yaml_line(error: yaml.YAMLError) -> str:
    """``"line N: "`` where the parser stopped, or ``""``."""
    mark = getattr(error, "problem_mark", None)
    return f"line {mark.line + 1}: " if mark is not None else ""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.yaml``/``.yml`` or ``.toml`` file into a mapping; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            values = yaml.load(text, Loader=_Loader)
        elif path.suffix == ".toml":
            values = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: a config is a .yaml, .yml or .toml file")
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {_yaml_line(error)}not valid YAML ({_yaml_problem(error)})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from error
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply; a config is a few levels of sections and values") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(values).__name__}")
    return values
