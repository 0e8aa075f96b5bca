"""Where settings are read from: each from its own ``REDIS_*`` / ``MEMORY_*`` variable.

The variables' names are the setup guide's, its contract with whoever deploys: a setting's
field names its variable (:func:`alias`), and a value refused is reported under that variable's
name (:func:`describe_invalid`), never with the value (it may be a password or a secret).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import AliasChoices, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from . import worker_settings

__all__ = ["VariableSource", "alias", "describe_invalid", "settings_variables", "variable_name"]


def alias(field: str, variable: str) -> Any:
    """The names a setting is accepted under: its Python keyword and its variable."""
    return AliasChoices(field, variable)


def variable_name(settings_cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable of a setting (the last name of its :func:`alias`)."""
    info = settings_cls.model_fields[field_name]
    assert isinstance(info.validation_alias, AliasChoices)
    return str(info.validation_alias.choices[-1])


class VariableSource(PydanticBaseSettingsSource):
    """Each setting from its own ``REDIS_*`` / ``MEMORY_*`` variable: the environment first,
    then a ``.env`` file in the working folder.

    The fields also accept their Python name as a keyword (``RedisConfig(port=6380)``);
    pydantic-settings' own environment source would then search the environment for that name
    too, and ``PORT`` or ``HOST`` (set by Heroku, Cloud Run, a shell) would configure Redis.
    """

    def __init__(self, settings_cls: type[BaseSettings], env_file: Path) -> None:
        super().__init__(settings_cls)
        self._values = settings_variables(env_file)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The value of the setting's variable, if set."""
        variable = variable_name(self.settings_cls, field_name)
        return self._values.get(variable), variable, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


def settings_variables(env_file: Path = Path(".env")) -> dict[str, str | None]:
    """The variables settings are read from: the environment, then ``env_file``.

    In a LiveKit job process, the worker's instead (see :mod:`.worker_settings`): those it
    read at its start, under this process's own environment; ``.env`` is not read again.
    """
    found: dict[str, str | None] = {}
    worker = worker_settings.inherited()
    if worker is not None:
        found.update(worker)
    elif env_file.is_file():
        found.update(dotenv_values(env_file, encoding="utf-8"))
    found.update(os.environ)
    return {name.upper(): value for name, value in found.items()}


def describe_invalid(error: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """What a :class:`~.exceptions.ConfigError` says of values refused: each variable and
    the rule it breaks."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        var = variable_name(settings_cls, field) if field in settings_cls.model_fields else field
        # item["msg"] describes the rule; item["input"] is left out on purpose (secrets).
        lines.append(f"{var}: {str(item['msg']).removeprefix('Value error, ')}")
    return (
        f"Invalid caller-memory configuration: {'; '.join(lines)} "
        "(fix it in the environment or in .env)"
    )
