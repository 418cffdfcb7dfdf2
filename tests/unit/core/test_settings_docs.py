"""The README's configuration table is the settings class, written out: every `Settings` field has a row (its
environment variable) and every `SIGNALS_*` row a field, so neither can change without the other."""

from __future__ import annotations

import re
from pathlib import Path

from signals.core.settings import Settings

README = Path(__file__).resolve().parents[3] / "README.md"
ENV_PREFIX = "SIGNALS_"


def configuration_rows(text: str) -> list[str]:
    """The variables named in the first column of the table under '## Configuration', in order."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([A-Z0-9_]+)`", row.split("|")[1])]


def test_the_configuration_table_lists_every_setting_once_and_nothing_else() -> None:
    documented = [
        name for name in configuration_rows(README.read_text(encoding="utf-8")) if name.startswith(ENV_PREFIX)
    ]
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert len(fields) >= 49  # sanity: the class read as expected
    assert sorted(fields - set(documented)) == [], "settings without a README row"
    assert sorted(set(documented) - fields) == [], "README rows without a setting"
    assert sorted(documented) == sorted(set(documented)), "a setting documented twice"


def test_the_table_reader_sees_a_missing_or_an_extra_row() -> None:
    text = README.read_text(encoding="utf-8")
    without = text.replace("| `SIGNALS_PPO_URL` |", "| `NOT_A_SETTING` |")
    assert "SIGNALS_PPO_URL" not in configuration_rows(without)
    extra = text.replace("| `SIGNALS_FEE` |", "| `SIGNALS_FEES` |")
    assert "SIGNALS_FEES" in configuration_rows(extra)
