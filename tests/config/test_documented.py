"""Every setting an operator can give is documented where the README's configuration table
(or, for one connector's own block, docs/connectors.md) says: a setting added without its
line fails here, not in an operator's guess."""

from __future__ import annotations

from pathlib import Path

from config import Settings

ROOT = Path(__file__).resolve().parents[2]


def environment_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"PAYHOOK_{field.upper()}"


def test_every_setting_is_documented() -> None:
    documented = (ROOT / "README.md").read_text() + (ROOT / "docs" / "connectors.md").read_text()
    missing = [
        environment_name(field)
        for field in Settings.model_fields
        if f"`{environment_name(field)}`" not in documented
    ]
    assert not missing, f"not in README's configuration table nor docs/connectors.md: {missing}"
