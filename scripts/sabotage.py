#!/usr/bin/env python3
"""Break the parser or the model on purpose and check that the test suite notices.

Each sabotage is applied inside the pytest process (a plugin, ``-p scripts.sabotage``) and the unit
tests that exercise the parser, the model and the analysis are run.  A sabotage that leaves the
suite green means the tests cannot fail where the project makes its claim: this script then exits 1.

    .venv/bin/python scripts/sabotage.py            # every sabotage
    .venv/bin/python scripts/sabotage.py badness-zero parser-drop-7th
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_model.py", "tests/test_analysis.py", "tests/test_scores.py", "tests/test_parser.py",
         "tests/test_vm_fixtures.py", "tests/test_logformat.py"]


def _badness_zero() -> None:
    from harness.core import analysis, model

    real = model.oom_badness

    def zero(t, totalpages, era, page_size=4096):
        return None if real(t, totalpages, era, page_size) is None else 0

    model.oom_badness = analysis.oom_badness = zero


def _badness_rss_only() -> None:
    from harness.core import analysis, model

    real = model.oom_badness

    def rss_only(t, totalpages, era, page_size=4096):
        b = real(t, totalpages, era, page_size)
        return None if b is None else max(t.rss, 1)

    model.oom_badness = analysis.oom_badness = rss_only


def _no_adj() -> None:
    from dataclasses import replace

    from harness.core import analysis, model

    real = model.oom_badness

    def no_adj(t, totalpages, era, page_size=4096):
        return real(replace(t, oom_score_adj=0) if t.oom_score_adj != -1000 else t, totalpages, era, page_size)

    model.oom_badness = analysis.oom_badness = no_adj


def _ties_first() -> None:
    from harness.core import model

    model._better = lambda era, p, best, chosen: chosen is None or best is None or p > best


def _totalpages_memcg_no_swap() -> None:
    from harness.core import analysis, model

    real = model.totalpages_memcg

    def no_swap(era, **kw):
        kw["total_swap_pages"] = 0
        return real(era, **kw)

    model.totalpages_memcg = analysis.totalpages_memcg = no_swap


def _oom_score_badness() -> None:
    from harness.core import analysis, model

    def raw(t, totalpages, era, page_size=4096):
        return model.oom_badness(t, totalpages, era, page_size) or 0

    model.oom_score = analysis.oom_score = raw


def _parser_drop(pattern: str | None = None, every: int | None = None) -> None:
    from harness.core import parser

    real = parser._Parser.feed
    n = {"i": 0}

    def feed(self, ll):
        n["i"] += 1
        text = getattr(ll, "text", None) or getattr(ll, "msg", None) or str(ll)
        if pattern is not None and re.search(pattern, text):
            return None
        if every is not None and n["i"] % every == 0:
            return None
        return real(self, ll)

    parser._Parser.feed = feed


SABOTAGE = {
    "badness-zero": _badness_zero,
    "badness-rss-only": _badness_rss_only,
    "badness-ignores-adj": _no_adj,
    "ties-go-to-first-in-every-era": _ties_first,
    "memcg-totalpages-ignores-swap": _totalpages_memcg_no_swap,
    "oom_score-is-raw-badness": _oom_score_badness,
    "parser-drop-7th-line": lambda: _parser_drop(every=7),
    "parser-drop-killed-lines": lambda: _parser_drop(pattern=r"Killed process"),
    "parser-drop-table-rows": lambda: _parser_drop(pattern=r"^\s*\[\s*\d+\]"),
}


def pytest_configure(config) -> None:  # the plugin side: runs inside pytest
    name = os.environ.get("OOMH_SABOTAGE")
    if name:
        SABOTAGE[name]()


def main(argv: list[str]) -> int:
    names = argv or list(SABOTAGE)
    bad = []
    for name in names:
        env = {**os.environ, "OOMH_SABOTAGE": name, "PYTHONPATH": str(ROOT)}
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "scripts.sabotage", "-p", "no:cacheprovider",
                            "-m", "not root and not vm and not docker", *TESTS], cwd=ROOT, env=env,
                           capture_output=True, text=True)
        m = re.search(r"(\d+) failed", p.stdout)
        failed = int(m.group(1)) if m else 0
        verdict = "caught" if p.returncode != 0 and failed else "NOT CAUGHT"
        if verdict != "caught":
            bad.append(name)
        print(f"{name:32} {verdict:10} {failed} failing tests")
    print(f"{len(names) - len(bad)}/{len(names)} sabotages caught by the suite")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
