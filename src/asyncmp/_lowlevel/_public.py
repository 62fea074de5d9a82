"""How the package shows its public face: handles without a public constructor, and public
module names on re-exported objects.

Design note. Most handles are made by a factory (`asyncmp.channel()` makes a `Client`,
`Stage.ticket()` a `Ticket` …): calling the class would make an object in no valid state. Such
classes use the `NoPublicConstructor` metaclass, which refuses ``Class(...)`` with a
`TypeError` that names the factory, while the library makes them with ``object.__new__`` in a
private ``_create`` classmethod (cheaper than a constructor call, which matters for the
objects made per request). The docs then show no constructor signature for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

__all__ = ("NoPublicConstructor", "publish")


class NoPublicConstructor(type):
    """Metaclass: ``Class(...)`` raises `TypeError` saying which factory makes instances.

    Declare the factory with a class keyword: ``class Client(..., metaclass=NoPublicConstructor,
    made_by="asyncmp.channel()")``.
    """

    _made_by: str

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> NoPublicConstructor:
        made_by = kwargs.pop("made_by", None)
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        if made_by is not None:
            cls._made_by = made_by
        elif not hasattr(cls, "_made_by"):
            raise TypeError(f"class {name} needs a made_by= keyword (the factory that makes it)")
        return cls

    def __init__(
        cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> None:
        kwargs.pop("made_by", None)
        super().__init__(name, bases, namespace, **kwargs)

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{cls.__qualname__} objects are made by {cls._made_by}, not directly")


def publish(namespace: dict[str, Any], names: Iterable[str]) -> None:
    """Make the objects a package re-exports name that package as their module.

    Tracebacks, reprs and the docs then say ``asyncmp.calloop.Timer`` rather than the private
    ``asyncmp.calloop._timer.Timer``. Only objects defined in a private module of that very
    package are renamed (``asyncmp.nats`` leaves an object of ``asyncmp._errors`` alone).
    """
    package: str = namespace["__name__"]
    private = f"{package}._"
    for name in names:
        obj = namespace[name]
        module = getattr(obj, "__module__", None)
        if isinstance(module, str) and module.startswith(private):
            try:
                obj.__module__ = package
            except (AttributeError, TypeError):  # e.g. a builtin or extension type
                pass
