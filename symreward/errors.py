"""The error hierarchy: every problem with user input is a ``SymrewardError``.

The command line turns these into exit code 2 with a one-line message; library users can catch
the base class or a specific subclass.
"""

from __future__ import annotations


class SymrewardError(ValueError):
    """Bad input: the message names the file, the field and the reason."""


class FormulaError(SymrewardError):
    """A formula that is outside the language, with the offending token and its column."""

    def __init__(self, message: str, *, text: str = "", token: str = "", column: int | None = None):
        self.reason = message
        self.text = text
        self.token = token
        self.column = column
        where = f" at column {column}" if column is not None else ""
        shown = f" (token {token!r}{where})" if token else where
        super().__init__(f"{message}{shown}")


class FeatureError(SymrewardError):
    """A features definition that is invalid or does not match a dataset."""


class DataError(SymrewardError):
    """A dataset that does not meet the data contract."""


class ArtifactError(SymrewardError):
    """A reward artifact that cannot be read or is invalid; may list several problems."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems) if len(self.problems) < 2 else
                         f"{len(self.problems)} problems:\n  " + "\n  ".join(self.problems))


class InvariantError(SymrewardError):
    """An invariant that cannot be checked: names the artifact, the invariant and the field."""


class EngineUnavailable(SymrewardError):
    """A search engine whose outside requirements (a package, a runtime) are missing; the
    message says what to install and which engine to use instead."""


class OptionError(SymrewardError):
    """An option (a constructor argument, a command-line flag) with a value it cannot take;
    ``option`` is its name in Python, ``value`` what was given, ``reason`` what it can be."""

    def __init__(self, option: str, value: object, reason: str):
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"{option}={value!r}: {reason}")
