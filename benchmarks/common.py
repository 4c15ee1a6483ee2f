"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import json
from pathlib import Path


def write_results(path: str | None, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` (if given), creating its folder."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=1))
