from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
VECTORS = REPOSITORY / "packages" / "core" / "vectors"
sys.path.insert(0, str(REPOSITORY / "python" / "src"))
sys.path.insert(0, str(REPOSITORY / "python" / "interop"))  # properties_json, shared with the interop device


def vectors(name: str) -> Any:
    """A frozen vector file, read from packages/core/vectors (never copied)."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))
