"""What every ``visrec`` command module shares: error handling, JSON output, comma-separated options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from visrec import render
from visrec.errors import VisrecError

F = TypeVar("F", bound=Callable[..., Any])


def command(interrupted: str = "interrupted") -> Callable[[F], F]:
    """A decorator turning library errors into a one-line message and the error's exit code, and Ctrl-C into
    ``interrupted`` (what was kept or lost) and exit code 130."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            render.show_notices()
            render.replace_unencodable_output()
            try:
                return fn(*args, **kwargs)
            except VisrecError as e:
                render.error(str(e))
                raise typer.Exit(e.exit_code) from None
            except KeyboardInterrupt:
                render.error(interrupted)
                raise typer.Exit(130) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (values JSON does not know are written as strings)."""
    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")


def split_names(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip())
