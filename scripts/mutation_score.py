#!/usr/bin/env python3
"""Print the mutation score of the last `mutmut run` (``make mutants``), per file and in total.

Reads mutmut's own result files (``mutants/harness/*.py.meta``).  Score = killed / (checked -
equivalent): a mutant that no test can kill because it does not change behaviour is *equivalent* and
listed in EQUIVALENT below with the reason; every other survivor is a missing test and is printed.
Exit 0 when the score reaches --target (default 90), 1 otherwise, 2 when there are no results.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit-code meaning (mutmut/stats.py status_by_exit_code)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious",
          36: "timeout", 37: "killed", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          None: "not checked"}

# Mutants that cannot change what the code computes (glob -> why).  Keep each justified.
EQUIVALENT: dict[str, str] = {
    'harness.core.model.x_select_bad_process__mutmut_60': 'the chosen-first re-sort by -points is stable: ascending-then-resorted gives the same order',
    'harness.core.model.x_select_bad_process__mutmut_64': 'as _60, in the first-scanned-wins branch',
    'harness.core.model.x_select_bad_process__mutmut_66': 're-sorting an already chosen-first list by (is not chosen, -points) is stable: same order',
    'harness.core.model.x_select_bad_process__mutmut_99': 'tied_with defaults to an empty list: the same Selection',
    'harness.core.analysis.x__nodes__mutmut_4': "int('XX(null)XX') fails too: None either way",
    'harness.core.analysis.x__nodes__mutmut_5': "int('(null)') raises ValueError: None either way",
    'harness.core.analysis.x__nodes__mutmut_15': 'a part with two dashes fails int() either way',
    'harness.core.analysis.x__nodes__mutmut_16': 'rsplit and split agree on a part with one dash; more fail int() either way',
    'harness.core.analysis.x__nodes__mutmut_18': 'a part with two dashes fails either way (unpacking or int())',
    'harness.core.analysis.x__explain__mutmut_24': "unreachable: a previous victim is never the model's choice (MMF_OOM_SKIP from 4.7 in oom_badness, 4.9 in the scan; before, it aborts the scan)",
    'harness.core.analysis.x__explain__mutmut_27': 'unreachable branch (see _24)',
    'harness.core.analysis.x__explain__mutmut_28': 'unreachable branch (see _24)',
    'harness.core.analysis.x__explain__mutmut_29': 'unreachable branch (see _24)',
    'harness.core.analysis.x__explain__mutmut_72': '_counter_tolerance() does not read its tasks argument',
    'harness.core.analysis.x__explain__mutmut_76': 'gap 0 is a tie, returned earlier',
    'harness.core.analysis.x__explain__mutmut_80': 'without a root bonus (4.17+) flipping CAP_SYS_ADMIN changes no score',
    'harness.core.analysis.x__counter_tolerance__mutmut_3': 'unreachable: no era band starts between 6.2 and 7.0, and 7.0+ returns earlier',
    'harness.core.analysis.x__counter_tolerance__mutmut_5': 'unreachable (see _3)',
    'harness.core.analysis.x__counter_tolerance__mutmut_6': 'unreachable (see _3)',
    'harness.core.analysis.x__counter_tolerance__mutmut_7': 'unreachable (see _3)',
    'harness.core.analysis.x__counter_tolerance__mutmut_8': 'unreachable (see _3)',
    'harness.core.analysis.x__counter_tolerance__mutmut_9': 'unreachable (see _3)',
    'harness.core.analysis.x__counter_tolerance__mutmut_10': 'unreachable (see _3)',
    'harness.core.analysis.x__counter_tolerance__mutmut_11': 'unreachable (see _3)',
    'harness.core.analysis.x__counter_tolerance__mutmut_12': 'unreachable (see _3)',
    'harness.core.analysis.x__second_kill_note__mutmut_43': 'grew is an integer: grew > n // 2 iff grew > n / 2',
    'harness.core.model.x__better__mutmut_1': '`chosen` and `best` are always set together: `and` equals `or` here',
    'harness.core.model.x__cdiv__mutmut_7': 'a == 0 gives q == 0, and -0 == 0',
    'harness.core.model.x__cdiv__mutmut_8': 'a >= 1 is a > 0 for integers; a == 0 gives 0 either way',
    'harness.core.model.x__cdiv__mutmut_10': 'b is totalpages, always >= 1',
    'harness.core.model.x__cdiv__mutmut_11': 'b is totalpages, always >= 1',
    'harness.core.model.x_oom_badness__mutmut_19': 'at_least(4, 9) vs (4, 8): no era band starts at 4.8',
    'harness.core.model.x_oom_badness__mutmut_28': 'page_size is only read for pgtables_bytes (4.15+), never on the <=3.4 0..1000 scale',
    'harness.core.model.x_oom_badness__mutmut_50': 'pts == 1 returns 1 either way',
    'harness.core.model.x_oom_badness__mutmut_91': 'points == 1 returns 1 either way',
    'harness.core.model.x_select_bad_process__mutmut_4': '`best` is only read once `chosen` is set, and they are set together',
    'harness.core.model.x_select_bad_process__mutmut_17': 'at_least(4, 10) vs (4, 9): no era band starts at 4.9',
    'harness.core.model.x_totalpages_memcg__mutmut_1': 'the swappiness default is only compared with 0',
    'harness.core.model.x_totalpages_memcg__mutmut_6': "any 'unlimited' above 2^62 pages gives the same minimum",
    'harness.core.model.x_totalpages_memcg__mutmut_7': "any 'unlimited' above 2^62 pages gives the same minimum",
    'harness.core.model.x_totalpages_memcg__mutmut_24': 'era.start <= (3, 7) vs < (3, 7): no era band starts at 3.7',
    'harness.core.model.x_totalpages_memcg__mutmut_26': '< (3, 8) vs < (3, 7): no era band starts at 3.7',
    'harness.core.model.x_totalpages_memcg__mutmut_36': '<= (4, 9) vs < (4, 9): no era band starts at 4.9',
    'harness.core.model.x_totalpages_memcg__mutmut_38': '< (4, 10) vs < (4, 9): no era band starts at 4.9',
    'harness.core.model.x_totalpages_memcg__mutmut_45': "the 4.9-5.9 formula min(mem + min(swap.max, swap), memsw) equals 5.10's mem + min(memsw - mem, swap) whenever memsw >= mem, which cgroup v1 enforces",
    'harness.core.model.x_totalpages_memcg__mutmut_46': 'as _45: the two formulas agree whenever memsw >= mem',
    'harness.core.model.x_totalpages_memcg__mutmut_47': 'as _45: the two formulas agree whenever memsw >= mem',
    'harness.core.model.x_totalpages_memcg__mutmut_66': "memsw None is 'unlimited': mem + min(inf - mem, swap) == mem + swap",
    'harness.core.eras.x_infer_era__mutmut_53': '`allowed` is never empty: format_range() starts at 2.6.36 (ERAS[0]) and never returns an empty range',
    'harness.core.eras.x_infer_era__mutmut_57': 'v == rng[0] is inside the range and returned earlier',
    'harness.core.eras.x_infer_era__mutmut_58': 'a suspect version is either below rng[0] or at/above rng[1]: v < rng[1] iff v < rng[0]',
    'harness.core.eras.x_infer_era__mutmut_78': '`allowed` is never empty (see _53)',
    'harness.core.eras.x_infer_era__mutmut_81': '`allowed` is never empty (see _53): the ERAS fallback is unreachable',
    'harness.core.eras.x_infer_era__mutmut_82': '`allowed` is never empty (see _53): the ERAS fallback is unreachable',
}

FILES = ("model", "eras", "analysis")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default="mutants/harness/core")
    ap.add_argument("--target", type=float, default=90.0)
    ap.add_argument("--files", default=",".join(FILES))
    a = ap.parse_args()
    total: Counter[str] = Counter()
    survivors: list[str] = []
    found = False
    for name in a.files.split(","):
        meta = Path(a.root) / f"{name}.py.meta"
        if not meta.is_file():
            continue
        found = True
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        c: Counter[str] = Counter()
        for key, code in codes.items():
            st = STATUS.get(code, "suspicious")
            if st == "survived" and any(fnmatch.fnmatch(key, pat) for pat in EQUIVALENT):
                st = "equivalent"
            c[st] += 1
            if st in ("survived", "no tests"):
                survivors.append(key)
        total.update(c)
        print(f"{name + '.py':12} " + "  ".join(f"{k} {v}" for k, v in sorted(c.items())) + f"  = {_score(c)}")
    if not found:
        print("no mutmut results: run `make mutants`", file=sys.stderr)
        return 2
    print(f"{'total':12} " + "  ".join(f"{k} {v}" for k, v in sorted(total.items())) + f"  = {_score(total)}")
    if survivors:
        print(f"\nsurviving mutants ({len(survivors)}; `mutmut show NAME` shows one):")
        for s in sorted(survivors):
            print("  " + s)
    if total["not checked"]:
        print(f"\n{total['not checked']} mutants were not checked (the run was stopped early)")
    print("\nequivalent mutants excluded:")
    for pat, why in EQUIVALENT.items():
        print(f"  {pat}: {why}")
    killed = total["killed"] + total["timeout"]
    denom = killed + total["survived"] + total["no tests"]
    return 0 if denom and 100 * killed / denom >= a.target else 1


def _score(c: Counter[str]) -> str:
    killed = c["killed"] + c["timeout"]
    denom = killed + c["survived"] + c["no tests"]  # a mutant no test runs is a missing test too
    return f"mutation score {100 * killed / denom:.1f}% ({killed}/{denom} non-equivalent checked mutants killed)" \
        if denom else "mutation score n/a"


if __name__ == "__main__":
    sys.exit(main())
