#!/usr/bin/env python3
"""Regenerates the committed TrainingRun CRD (crds/) from the pydantic models; `make verify` diffs it."""

from __future__ import annotations

import sys
from pathlib import Path

from runyard import constants as c
from runyard.crdgen import crd_yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "crds" / f"{c.GROUP}_{c.PLURAL}.yaml"


def main() -> int:
    CRD_FILE.parent.mkdir(parents=True, exist_ok=True)
    text = crd_yaml()
    if CRD_FILE.exists() and CRD_FILE.read_text() == text:
        print(f"{CRD_FILE.relative_to(ROOT)} up to date")
        return 0
    CRD_FILE.write_text(text)
    print(f"wrote {CRD_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
