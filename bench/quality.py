"""Search quality on the Icecat catalog's human relevance judgments (dev queries).

    .venv/bin/python bench/quality.py [--icecat ../shared/data/icecat]

The same as `vitrine eval --feed .../products.ucp.jsonl.gz --market US --judgments
.../judgments-dev.csv`; kept here so `make bench` reports quality next to speed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitrine.cli import main as vitrine


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--icecat", default=str(ROOT.parent / "shared" / "data" / "icecat"))
    args = parser.parse_args()
    icecat = Path(args.icecat)
    return vitrine(["eval", "--feed", str(icecat / "products.ucp.jsonl.gz"), "--market", "US",
                    "--judgments", str(icecat / "judgments-dev.csv")])


if __name__ == "__main__":
    sys.exit(main())
