#!/usr/bin/env python3
"""Regenerates the committed CRDs (crds/) from the pydantic models; `make verify` diffs them."""

from __future__ import annotations

import sys
from pathlib import Path

from runyard.crdgen import crd_files

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds"


def main() -> int:
    CRD_DIR.mkdir(parents=True, exist_ok=True)
    files = crd_files()
    for name, text in files.items():
        path = CRD_DIR / name
        if path.exists() and path.read_text() == text:
            print(f"{path.relative_to(ROOT)} up to date")
            continue
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    for stale in CRD_DIR.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
            print(f"removed {stale.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
