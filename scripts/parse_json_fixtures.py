"""Write ``oom-harness parse --json`` of every fixture under tests/fixtures into one folder.

Used to prove a parser refactor changes nothing: run it before and after, then ``diff -r``.

    .venv/bin/python scripts/parse_json_fixtures.py OUTDIR
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cli.main import main  # noqa: E402


def dump(out: Path) -> int:
    """One ``<dir>_<file>.json`` per fixture log; returns how many were written."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for log in sorted((ROOT / "tests" / "fixtures").glob("*/*.log")):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            main(["parse", "--json", str(log.relative_to(ROOT))])
        (out / f"{log.parent.name}_{log.name}.json").write_text(buf.getvalue())
        n += 1
    return n


if __name__ == "__main__":
    print(dump(Path(sys.argv[1])), "fixtures written")
