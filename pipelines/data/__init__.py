"""The data layer: Parquet schemas, validated readers/writers, and importers (DESIGN.md "Data").

    from pipelines.data import write_table, read_table, SCHEMAS, DataError
    write_table(rows, run_dir / "data" / "prompts.parquet", "prompts")
    rows = read_table(path, "preferences", max_tokens=4096, count_tokens=count, on_bad_row="skip")
"""

from typing import Any

from pipelines.data.io import (
    check_arrow_schema,
    iter_records,
    read_arrow,
    read_table,
    read_table_with_report,
    write_table,
)
from pipelines.data.schemas import (
    PREFERENCE_KINDS,
    PROMPT_KINDS,
    RATINGS,
    ROLES,
    SAFETY_LABELS,
    SCHEMAS,
    SPLITS,
    UNIQUE_KEYS,
    schema_for,
)
from pipelines.data.validate import DataError, DropRow, RowError, RowValidator, SkipReport, check_messages, check_row

# The importers load lazily so that `python -m pipelines.data.importers` (the CLI) does not import
# its own module twice (runpy warns when a package import already loaded the module it runs).
_IMPORTERS = ("ImportResult", "import_hh", "import_messages", "import_pairs", "normalize_rating", "parse_hh_transcript")


def __getattr__(name: str) -> Any:
    if name in _IMPORTERS:
        from pipelines.data import importers

        return getattr(importers, name)
    raise AttributeError(f"module 'pipelines.data' has no attribute {name!r}")


__all__ = [
    "PREFERENCE_KINDS",
    "PROMPT_KINDS",
    "RATINGS",
    "ROLES",
    "SAFETY_LABELS",
    "SCHEMAS",
    "SPLITS",
    "UNIQUE_KEYS",
    "DataError",
    "DropRow",
    "ImportResult",
    "RowError",
    "RowValidator",
    "SkipReport",
    "check_arrow_schema",
    "check_messages",
    "check_row",
    "import_hh",
    "import_messages",
    "import_pairs",
    "iter_records",
    "normalize_rating",
    "parse_hh_transcript",
    "read_arrow",
    "read_table",
    "read_table_with_report",
    "schema_for",
    "write_table",
]
