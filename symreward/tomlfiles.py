"""Reading the TOML files a person writes (features, findings, constraints), with the one set of
messages for a missing, unreadable or malformed file."""

from __future__ import annotations

import os
from pathlib import Path

import tomlkit
from tomlkit.toml_document import TOMLDocument

from symreward.errors import SymrewardError


def read_toml(path: str | os.PathLike, error: type[SymrewardError] = SymrewardError
              ) -> TOMLDocument:
    """The parsed document at ``path``; ``error`` (a ``SymrewardError`` kind) naming the file
    when it is missing, unreadable or not valid TOML."""
    path = Path(path)
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None
    except tomlkit.exceptions.ParseError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
