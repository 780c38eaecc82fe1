"""The ``.env`` file, checked line by line before the settings are read.

python-dotenv skips a line it cannot parse (with a log warning few people see), so a setting
written as ``AZURE_OPENAI_ENDPOINT https://...`` used to surface as "AZURE_OPENAI_ENDPOINT is not
set". Here such a line is a configuration error naming the file, the line number, what is wrong
with it and what to write instead. Only the setting's name is ever quoted, never its value: the
line may hold a key.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from dotenv.parser import parse_stream

from realtalk.errors import ConfigError
from realtalk.settings import Settings, load_settings

__all__ = ["check_dotenv", "load_checked_settings"]

DOTENV = Path(".env")  # settings.load_settings reads it from the current folder

_NAME = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)")
_FIX = (
    "Write each setting as NAME=value on its own line (quote a value that holds spaces or '#'), "
    "or start the line with '#' to make it a comment."
)
_EXAMPLES = {
    "AZURE_OPENAI_ENDPOINT": "https://my-resource.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENT_NAME": "gpt-realtime-1.5",
    "AZURE_OPENAI_API_KEY": "<your key>",
    "OPENAI_API_KEY": "<your key>",
}


def load_checked_settings(env_file: Path = DOTENV) -> Settings:
    """``load_settings``, after checking ``env_file`` (when it exists); raises ``ConfigError``."""
    check_dotenv(env_file)
    return load_settings(env_file)


def check_dotenv(path: Path) -> None:
    """Raise ``ConfigError`` for the first line of ``path`` that python-dotenv cannot parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path.resolve()}: {exc}", variable=str(path)) from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            first_line = binding.original.string.splitlines()[0] if binding.original.string else ""
            problem, name = _describe(first_line)
            example = f"{name}={_EXAMPLES.get(name, '<value>')}" if name else None
            raise ConfigError(
                f"{path.resolve()}, line {binding.original.line}: {problem} {_FIX}",
                variable=name or str(path),
                example=example,
            )


def _describe(line: str) -> tuple[str, str | None]:
    """What is wrong with a line python-dotenv refused, and the setting's name when it has one."""
    stripped = line.strip()
    found = _NAME.match(stripped)
    if found is None:
        return "it does not start with a setting's name.", None
    name, rest = found.group(1), stripped[found.end() :]
    after = rest.lstrip()
    if after.startswith("="):
        value = after[1:].lstrip()
        for quote in ('"', "'"):
            if value.startswith(quote) and quote in value[1:]:
                return f"the value of {name} has text after its closing {quote} quote.", name
            if value.startswith(quote):
                return f"the value of {name} opens a {quote} quote that is never closed.", name
        return f"the value of {name} cannot be read; quote it.", name
    if after.startswith(":"):
        return f"{name} is followed by ':'; write '=' instead.", name
    if "=" in after:
        return "the name before '=' has a space in it.", None
    return f"no '=' after {name}.", name
