"""The house's layers hold: no package imports one above it (`bench.layers.LAYERS`, bottom to
top, and within `workers` and `webhook` their rooms), the sandbox imports only what its
exception list names, and nothing imports a benchmark or a test. Every module of every
package pyproject ships is parsed, so a new package is guarded the day it is listed.

`decide` importing no client library is checked where the decisions are
(`tests/workers/test_decide.py`), in a fresh interpreter, which sees what `ast` cannot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import layers
from bench.layers import KNOWN_UPWARD, SANDBOX_LEAVES, Arrow

HOUSE = layers.modules()
ARROWS = layers.arrows(HOUSE)


def shown(found: list[Arrow]) -> str:
    return "\n".join(f"  {a.importer} -> {a.imported} (line {a.line})" for a in found)


def test_every_shipped_package_has_its_place() -> None:
    assert {"config", "sessions", "workers", "webhook"} <= {m.top for m in HOUSE}
    assert layers.unplaced(HOUSE) == [], "add it to bench/layers.py LAYERS (or the peers)"


def test_no_arrow_points_the_wrong_way() -> None:
    wrong = layers.wrong_way(ARROWS)
    assert wrong == [], f"imports against the layers (bench/layers.py):\n{shown(wrong)}"


@pytest.mark.parametrize(
    "pair",
    [
        pytest.param(pair, marks=pytest.mark.xfail(strict=True, reason=why))
        for pair, why in KNOWN_UPWARD.items()
    ],
    ids=[f"{a}->{b}" for a, b in KNOWN_UPWARD],
)
def test_a_known_upward_arrow_is_gone(pair: tuple[str, str]) -> None:
    # Passing here fails the run (strict): the arrow is gone, take it off KNOWN_UPWARD.
    assert pair not in {arrow.pair for arrow in ARROWS}


@pytest.mark.parametrize("leaf", sorted(SANDBOX_LEAVES))
def test_a_leaf_the_sandbox_imports_imports_nothing_above_config(leaf: str) -> None:
    # Otherwise the exception would bring the house into the peers through the back door.
    assert any(m.name == leaf for m in HOUSE), f"{leaf} is gone: take it off SANDBOX_LEAVES"
    beyond = [
        a
        for a in ARROWS
        if a.importer == leaf and a.imported.split(".")[0] not in layers.SANDBOX_MAY_IMPORT
    ]
    assert beyond == [], shown(beyond)


def house_of(root: Path, files: dict[str, str]) -> list[Arrow]:
    (root / "pyproject.toml").write_text(
        '[tool.setuptools.packages.find]\ninclude = ["config*", "sessions*", "workers*", '
        '"sandbox*"]\n'
    )
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return layers.arrows(layers.modules(root))


def test_the_guard_sees_an_upward_import_however_it_is_written(tmp_path: Path) -> None:
    found = house_of(
        tmp_path,
        {
            "config/__init__.py": "",
            "sessions/__init__.py": "",
            "sessions/store.py": "def lazy():\n    from workers.lifecycle import runner\n",
            "sessions/keys.py": "from . import store\n",
            "workers/__init__.py": "",
            "workers/retry_policy.py": "",
            "workers/consumer.py": "from workers.lifecycle.runner import run\n",
            "workers/connectors/__init__.py": "",
            "workers/connectors/base.py": "import workers.lifecycle.runner\n",
            "workers/connectors/http.py": "from ..retry_policy import Boom\n",
            "workers/lifecycle/__init__.py": "",
            "workers/lifecycle/runner.py": "from ..connectors.base import X\nimport bench.x\n",
            "sandbox/__init__.py": "from sessions import store\nfrom config import settings\n",
        },
    )
    assert [a.pair for a in layers.wrong_way(found)] == [
        ("sandbox", "sessions.store"),
        ("sessions.store", "workers.lifecycle.runner"),
        ("workers.connectors.base", "workers.lifecycle.runner"),
        ("workers.lifecycle.runner", "bench.x"),
    ]
