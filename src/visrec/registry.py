"""A small explicit registry: a name maps to a builder. Nothing is scanned or imported at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from visrec.errors import BadInput, MissingExtra

T = TypeVar("T")
TORCH_MODULES = ("torch", "torchvision")
"""Packages of the ``export`` extra (the default install has none): a lazy backend that imports them at load time
raises ``MissingExtra`` instead of ``ModuleNotFoundError``."""


class Registry(Generic[T]):
    """Maps names to builders of ``T``.

    Builders are registered with :meth:`register` (usable as a decorator) and called by :meth:`create`
    with keyword options. Lazy builders (a ``"module:function"`` string) let heavy backends stay unimported
    until they are asked for.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., T] | str] = {}
        self._help: dict[str, str] = {}

    def register(
        self, name: str, builder: Callable[..., T] | str | None = None, help: str = ""
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register ``builder`` under ``name``; with no builder, returns a decorator."""

        def _add(b: Callable[..., T] | str) -> Any:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._builders[name] = b
            self._help[name] = help
            return b

        if builder is not None:
            _add(builder)
            return lambda f: f
        return _add

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._builders)

    def describe(self, name: str) -> str:
        """One-line help text given at registration."""
        return self._help.get(name, "")

    def builder(self, name: str) -> Callable[..., T]:
        """The builder registered under ``name`` (importing it if it was registered lazily)."""
        try:
            b = self._builders[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise BadInput(f"unknown {self.kind} {name!r}; known: {known}") from None
        if isinstance(b, str):
            import importlib

            module, _, attr = b.partition(":")
            try:
                b = getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as exc:
                if exc.name not in TORCH_MODULES:
                    raise
                # The default install runs exported models only; backends that run torch need its extra.
                raise MissingExtra(exc.name, "export", f"The {self.kind} {name!r}") from exc
            self._builders[name] = b
        return b

    def create(self, name: str, **options: Any) -> T:
        """Build the ``name`` backend with ``options``."""
        return self.builder(name)(**options)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
