"""The exception tree: every error class of payhook's packages is defined in `errors`, under
`PayhookError`, and the drawing in the package's docstring is the tree as it is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from redis.exceptions import RedisError

import errors
from errors import (
    BadMessage,
    BodyProblem,
    ConnectorSettingsError,
    IllegalTransition,
    LeaseLost,
    LeaseLostError,
    MoneyError,
    PayhookError,
)
from errors.replication import NotReplicated

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# The sandbox plays Shopify and the PSPs: its errors are those peers' answers, not payhook's.
NOT_PAYHOOK = {"sandbox"}


def _packages() -> list[str]:
    found = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]["find"]
    return [pattern.rstrip("*") for pattern in found["include"]]


def _import_all(package: str) -> None:
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, f"{package}."):
        # `python -m` entry points run when imported.
        if module.name.rsplit(".", 1)[-1] != "__main__":
            importlib.import_module(module.name)


def _descendants(cls: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _descendants(sub)
    return found


def _ours() -> set[type[BaseException]]:
    packages = set(_packages()) - NOT_PAYHOOK
    for package in sorted(packages):
        _import_all(package)
    return {cls for cls in _descendants(BaseException) if cls.__module__.split(".")[0] in packages}


def _drawing() -> list[tuple[int, str, str]]:
    """(depth, class name, text) per class drawn in the docstring's tree."""
    doc = errors.__doc__ or ""
    block = doc.split("```")[1]
    drawn = []
    for line in block.strip("\n").splitlines():
        root = re.match(r"^([A-Z]\w+)\s+(.*)$", line)
        branch = re.match(r"^([│ ]*)[├└]── ([A-Z]\w+)\s+(.*)$", line)
        if root is not None:
            drawn.append((0, root[1], root[2]))
        elif branch is not None:
            drawn.append((len(branch[1]) // 4 + 1, branch[2], branch[3]))
        else:
            # A description carried over from the line above: only glyphs before it.
            assert re.match(r"^[│ ]+\S", line), f"a line the drawing cannot read: {line!r}"
    return drawn


def _in_errors(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "errors"


def _defined_in_errors() -> dict[str, type[BaseException]]:
    _import_all("errors")
    modules = [
        errors,
        *(sys.modules[name] for name in sorted(sys.modules) if name.startswith("errors.")),
    ]
    return {
        name: cls
        for module in modules
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and issubclass(cls, BaseException)
        and cls.__module__ == module.__name__
    }


def test_every_error_class_of_payhook_is_defined_in_errors_under_the_root() -> None:
    strays = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _ours()
        if not _in_errors(cls) or not issubclass(cls, PayhookError)
    )
    assert strays == []


def test_importing_the_tree_loads_no_client_library() -> None:
    # A fresh interpreter: what `import errors` alone loads (the pure decisions import it).
    probe = (
        "import sys, errors; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'redis', 'gql', 'aiohttp', 'celery', 'kombu', 'cryptography', 'pydantic'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_the_drawing_names_every_class_once_under_its_own_parent() -> None:
    classes = _defined_in_errors()
    drawn = _drawing()
    names = [name for _, name, _ in drawn]
    assert sorted(names) == sorted(classes)
    parents: list[str] = []
    for depth, name, _ in drawn:
        del parents[depth:]
        tree_bases = [base for base in classes[name].__bases__ if _in_errors(base)]
        assert [base.__name__ for base in tree_bases] == parents[-1:], name
        parents.append(name)


def test_the_drawing_brackets_every_base_from_outside_the_tree() -> None:
    classes = _defined_in_errors()
    for _, name, text in _drawing():
        outside = sorted(
            base.__name__
            for base in classes[name].__bases__
            if not _in_errors(base) and base is not Exception
        )
        bracketed = re.match(r"^\[([\w, ]+)\]", text)
        assert (bracketed[1].split(", ") if bracketed else []) == outside, name


@pytest.mark.parametrize(
    ("error", "caught_as"),
    [
        # The session consumer leaves a run whose write the replicas did not confirm to the
        # due set, as it does a run that met any Redis failure.
        (NotReplicated, RedisError),
        # Callers and settings checks catch them as ValueErrors, and pydantic answers a
        # validator's ValueError as a validation error (a 422, not a 500).
        (MoneyError, ValueError),
        (IllegalTransition, ValueError),
        (BadMessage, ValueError),
        (BodyProblem, ValueError),
        (ConnectorSettingsError, ValueError),
    ],
)
def test_errors_stay_what_their_handlers_catch(
    error: type[BaseException], caught_as: type[BaseException]
) -> None:
    assert issubclass(error, caught_as)


def test_a_lost_lease_is_counted_once() -> None:
    # The runner catches both and counts only the write's `LeaseLost`: the renewer counted
    # its own `LeaseLostError` already.
    assert not issubclass(LeaseLostError, LeaseLost)
    assert not issubclass(LeaseLost, LeaseLostError)
