"""`_public`: handles that only a factory makes (`NoPublicConstructor`), and `publish`, which
gives re-exported objects their package's name. (That asyncmp's own re-exports are published
is checked by tests/test_exports.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from asyncmp._lowlevel._public import NoPublicConstructor, publish


class Handle(metaclass=NoPublicConstructor, made_by="pkg.open_handle()"):
    """A handle made the way the library makes its handles."""

    name: str

    def __init__(self) -> None:
        raise AssertionError("the constructor never runs")

    @classmethod
    def _create(cls, name: str) -> Handle:
        self: Handle = object.__new__(cls)
        self.name = name
        return self


class SubHandle(Handle):
    """Inherits its factory."""


class OtherHandle(Handle, made_by="pkg.open_other()"):
    """Names its own factory."""


def test_calling_the_class_raises_a_type_error_naming_the_factory() -> None:
    """``Handle(...)`` is a TypeError that says which factory makes handles, whatever the
    arguments."""
    with pytest.raises(TypeError, match=r"^Handle objects are made by pkg\.open_handle\(\)"):
        Handle()
    with pytest.raises(TypeError, match=r"made by pkg\.open_handle\(\), not directly"):
        Handle("x", key=1)  # type: ignore[call-arg]


def test_create_makes_an_instance_without_the_constructor() -> None:
    """The library's private ``_create`` makes a working instance (``object.__new__``),
    bypassing the refused call and ``__init__``."""
    handle = Handle._create("made")
    assert isinstance(handle, Handle)
    assert handle.name == "made"
    assert type(SubHandle._create("sub")) is SubHandle


def test_subclasses_inherit_or_name_their_factory() -> None:
    """A subclass inherits its base's factory unless it names its own."""
    with pytest.raises(TypeError, match=r"^SubHandle objects are made by pkg\.open_handle\(\)"):
        SubHandle()
    with pytest.raises(TypeError, match=r"^OtherHandle objects are made by pkg\.open_other\(\)"):
        OtherHandle()


def test_a_class_must_name_its_factory() -> None:
    """A class with the metaclass and no ``made_by=`` (its own or inherited) is refused when
    it is defined, not when someone first calls it."""
    with pytest.raises(TypeError, match="Orphan needs a made_by= keyword"):

        class Orphan(metaclass=NoPublicConstructor):
            pass


def _defined_in(module: str, name: str) -> Any:
    def function() -> None:
        pass

    function.__module__ = module
    function.__name__ = name
    return function


class _Fixed:
    """An object whose module cannot be changed (as a builtin or extension type's)."""

    @property
    def __module__(self) -> str:  # type: ignore[override]
        return "pkg._private"


def test_publish_names_the_package_on_objects_of_its_private_modules() -> None:
    """`publish` gives the package's name to objects defined in its private modules only:
    not to those of a public submodule, of another package's private module, or of
    ``builtins``; an object whose module cannot be set is left as it is, without error."""
    private = _defined_in("pkg._impl", "private")
    deep = _defined_in("pkg._impl._deeper", "deep")
    public_sub = _defined_in("pkg.sub", "public_sub")
    foreign = _defined_in("other._impl", "foreign")
    fixed = _Fixed()
    namespace: dict[str, Any] = {
        "__name__": "pkg",
        "private": private,
        "deep": deep,
        "public_sub": public_sub,
        "foreign": foreign,
        "fixed": fixed,
        "builtin": len,
        "constant": 42,
    }
    publish(namespace, [name for name in namespace if name != "__name__"])
    assert (private.__module__, deep.__module__) == ("pkg", "pkg")
    assert public_sub.__module__ == "pkg.sub"
    assert foreign.__module__ == "other._impl"
    assert fixed.__module__ == "pkg._private"
    assert len.__module__ == "builtins"
    assert namespace["constant"] == 42


def test_publish_renames_only_the_names_given() -> None:
    """Objects the package does not list are left with their own module."""
    listed = _defined_in("pkg._impl", "listed")
    unlisted = _defined_in("pkg._impl", "unlisted")
    publish({"__name__": "pkg", "listed": listed, "unlisted": unlisted}, ["listed"])
    assert (listed.__module__, unlisted.__module__) == ("pkg", "pkg._impl")
