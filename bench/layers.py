"""The house's layers: which package may import which, and every import there is.

One place for the order, read by the guard (`tests/test_layers.py`) and by the picture of
the house (`python -m bench.house`). The packages are the ones pyproject ships
(`[tool.setuptools.packages.find] include`), so a new top-level package is parsed as soon
as it is listed; one missing from `LAYERS` and from the peers fails the guard until it is
placed.

An arrow goes from the importing module to the imported one, found with `ast` in every
`import` of a module (inside functions and under `TYPE_CHECKING` too: a name a module
needs is a dependency, whenever it is loaded). It is upward when it points to a higher
layer than its own; within a package, `SUBLAYERS` orders its rooms the same way.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top: a package imports only packages to its left. A package listed but not
# present is skipped.
LAYERS = (
    "errors",
    "config",
    "redisio",
    "sessions",
    "shops",
    "readouts",
    "transport",
    "workers",
    "webhook",
    "ops",
)

# Within a package, bottom to top, by module prefix (the longest prefix decides). The
# package's own name stands for every module no other prefix names.
SUBLAYERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "workers": (
        # The leaf helper of every room of `workers`: the retry schedules (the connectors
        # and the gateway read `Retry-After` with them).
        ("workers.retry_policy",),
        # What talks to the PSP and to Shopify.
        ("workers.connectors", "workers.shopify"),
        # A session's run: decisions, the runner, one module per kind.
        ("workers.lifecycle",),
        # The process: consumer, runtime, tasks, sweeper, metrics, webhooks, onboarding.
        ("workers",),
    ),
    "webhook": (
        # Shopify's, the PSP's and the buyer's routes, health and metrics, and what every
        # route shares: keys, errors, body reading, the admin token's check.
        ("webhook",),
        # The operator's console under /admin, a sub-app: it uses the rooms below, and none
        # of them knows it.
        ("webhook.console",),
        # The factory that mounts it.
        ("webhook.app",),
    ),
}

# Upward arrows the code has, each to be removed (none today); the guard fails on any other,
# and (strict xfail) on one of these once it is gone, so the list only shrinks.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

# Peers and tools outside the order. `sandbox` plays Shopify and the PSPs: it may import
# these packages whole, and the leaf modules below, each importing nothing of the house
# beyond these packages. Nothing but `ops` (which starts the peers) imports `sandbox`.
SANDBOX = "sandbox"
SANDBOX_MAY_IMPORT = ("errors", "config")
SANDBOX_LEAVES: dict[str, str] = {
    "sessions.money": (
        "amounts to minor units the way payhook stores them (the simulator's page, the "
        "http PSP fake)"
    ),
    "webhook.signing": (
        "the simulator's buyer page signs its callback the way payhook verifies it"
    ),
}
SANDBOX_USERS: dict[str, str] = {
    "ops": "`payhook sandbox`, `psp-sandbox` and `payhook dev` start the peers",
}
# Benchmarks and tests import the house; the house never imports them.
TOOLS = ("bench", "tests")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def room(self) -> str:
        """The package the module lives in (a package's `__init__` is its own room)."""
        return self.name if self.is_package else self.name.rpartition(".")[0] or self.name

    @property
    def top(self) -> str:
        return self.name.split(".")[0]


@dataclass(frozen=True)
class Arrow:
    importer: str
    imported: str
    line: int

    @property
    def pair(self) -> tuple[str, str]:
        return (self.importer, self.imported)


def shipped_packages(root: Path = ROOT) -> list[str]:
    """The top-level packages pyproject ships, in its order."""
    with (root / "pyproject.toml").open("rb") as file:
        found = tomllib.load(file)["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = (str(pattern).rstrip("*").rstrip(".").split(".")[0] for pattern in found)
    return list(dict.fromkeys(top for top in tops if top))


def modules(root: Path = ROOT, packages: Iterable[str] | None = None) -> list[Module]:
    """Every module of the packages (those not on disk are skipped), sorted by name."""
    found = []
    for top in shipped_packages(root) if packages is None else packages:
        if not (root / top / "__init__.py").is_file():
            continue
        for path in (root / top).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            found.append(Module(name, path, is_package))
    return sorted(found, key=lambda module: module.name)


def arrows(house: list[Module]) -> list[Arrow]:
    """Every import of a module of the house by another, resolved to the module it names;
    imports of `TOOLS` are kept too (they are never allowed)."""
    known = {module.name for module in house}
    tops = {module.top for module in house} | set(TOOLS)
    found = []
    for module in house:
        tree = ast.parse(module.path.read_text(), str(module.path))
        for node in ast.walk(tree):
            for target in _targets(module, node, known):
                if target.split(".")[0] in tops and target != module.name:
                    found.append(Arrow(module.name, target, getattr(node, "lineno", 0)))
    return sorted(set(found), key=lambda a: (a.importer, a.imported, a.line))


def _targets(module: Module, node: ast.AST, known: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield _longest_known(alias.name, known)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.name.split(".")
            if not module.is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([node.module] if node.module else [])])
        for alias in node.names:
            # `from package import module` names a module; `from module import name`, a name.
            child = f"{base}.{alias.name}"
            yield child if child in known else _longest_known(base, known)


def _longest_known(name: str, known: set[str]) -> str:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return name


def rank(module: str) -> tuple[int, int] | None:
    """Where a module stands: its package's layer, then its room's within the package;
    None outside the order (peers, tools, packages not placed)."""
    top = module.split(".")[0]
    if top not in LAYERS:
        return None
    best, sub = -1, 0
    for index, prefixes in enumerate(SUBLAYERS.get(top, ())):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, sub = len(prefix), index
    return (LAYERS.index(top), sub)


def upward(arrow: Arrow) -> bool:
    low, high = rank(arrow.importer), rank(arrow.imported)
    return low is not None and high is not None and low < high


def sandbox_allows(arrow: Arrow) -> bool:
    """Whether an arrow touching the sandbox is one the peers may have."""
    importer, imported = arrow.importer.split(".")[0], arrow.imported.split(".")[0]
    if importer == SANDBOX:
        return imported in (SANDBOX, *SANDBOX_MAY_IMPORT) or _within(arrow.imported, SANDBOX_LEAVES)
    if imported == SANDBOX:
        return importer in SANDBOX_USERS
    return True


def _within(module: str, leaves: Iterable[str]) -> bool:
    return any(module == leaf or module.startswith(leaf + ".") for leaf in leaves)


def unplaced(house: list[Module]) -> list[str]:
    """Shipped packages in neither the order nor the peers."""
    return sorted({m.top for m in house} - {*LAYERS, SANDBOX})


def wrong_way(found: list[Arrow]) -> list[Arrow]:
    """Every arrow the order forbids and no exception names: upward ones, the sandbox's
    others, and any import of a tool."""
    return [
        arrow
        for arrow in found
        if (upward(arrow) and arrow.pair not in KNOWN_UPWARD)
        or not sandbox_allows(arrow)
        or arrow.imported.split(".")[0] in TOOLS
    ]
