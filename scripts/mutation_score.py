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
    'harness.core.analysis.xǁAnalysisǁto_dict__mutmut_86': "Analysis.score always comes from score_check(), whose dict has score_check and score_note from its first line: .get()'s default is never used",
    'harness.core.analysis.xǁAnalysisǁto_dict__mutmut_88': 'as _86 (the score_check default)',
    'harness.core.analysis.xǁAnalysisǁto_dict__mutmut_91': 'as _86 (the score_check default)',
    'harness.core.analysis.xǁAnalysisǁto_dict__mutmut_92': 'as _86 (the score_check default)',
    'harness.core.analysis.xǁAnalysisǁto_dict__mutmut_96': 'as _86 (the score_note default)',
    'harness.core.analysis.xǁAnalysisǁto_dict__mutmut_98': 'as _86 (the score_note default)',
    'harness.core.analysis.xǁAnalysisǁto_dict__mutmut_101': 'as _86 (the score_note default)',
    'harness.core.analysis.x_score_check__mutmut_18': "every return path of score_check() and _score_against() assigns score_note: the initial '' is never read",
    'harness.core.analysis.x_score_check__mutmut_33': "row is None exactly when t is None: _score_in() takes row from the table by t's pid (t was built from that table), analyze() passes both None",
    'harness.core.analysis.x_score_check__mutmut_40': "unreachable default: a printed score needs a select line, which makes `selected` non-None, so _score_in() passes a reason whenever t is None",
    'harness.core.analysis.x_score_check__mutmut_41': 'unreachable default (see _40)',
    'harness.core.analysis.x_score_check__mutmut_88': "cap_sys_admin None and False are read alike: only as truth values (oom_badness(), the `not` of _explain()'s flip)",
    'harness.core.analysis.x__foreign_columns__mutmut_3': "'XXXX' does not contain FOREIGN_COLUMNS either: [] either way",
    'harness.core.analysis.x__foreign_columns__mutmut_9': 'parser._layout_name() writes FOREIGN_COLUMNS once, after a layout name without it and before whitespace-free column names: split(), rsplit() and maxsplit 1 or 2 give the same second piece',
    'harness.core.analysis.x__foreign_columns__mutmut_10': 'as _9',
    'harness.core.analysis.x__foreign_columns__mutmut_11': 'as _9',
    'harness.core.analysis.x__impossible_score__mutmut_24': '_counter_tolerance() does not read its tasks argument',
    'harness.core.analysis.x__choice_independent_of_totalpages__mutmut_22': 'select_bad_process() sets chosen and points together (both None only when nobody is eligible or the scan aborts): `and` equals `or`',
    'harness.core.analysis.x__swap_in_use_pages__mutmut_15': 'pkb is a page size in kB, at least 4: 1 // pkb == 0 // pkb == 0',
    'harness.core.analysis.x__swap_in_use_pages__mutmut_33': 'as _15',
    'harness.core.analysis.x__neighbour_eras__mutmut_11': "ERAS[0] (2.6.36-2.6.37) is the neighbour of ERAS[1] (2.6.38) only, which differs from it only in the memcg totalpages unit (memcg_limit_adds_swap_pages_to_bytes); _explain() compares eras at one totalpages, where both pick the same task, so that alternative never picks the observed one",
    'harness.core.analysis.x__neighbour_eras__mutmut_12': 'as _11 (0 < j is 1 <= j)',
    'harness.core.analysis.x_derive_totalpages__mutmut_44': 'totalpages_memcg() only compares swappiness with 0: the default 60, None and 61 are all non-zero',
    'harness.core.analysis.x_derive_totalpages__mutmut_46': 'as _44',
    'harness.core.analysis.x_derive_totalpages__mutmut_101': "kind is cpuset or mempolicy only from a summary line's constraint (OomEvent.kind), so ev.summary is set in this branch",
    'harness.core.analysis.x_derive_totalpages__mutmut_148': 'at_least(4) compares with (4,), and no era starts between (4,) and (4, 0): same answer for every era',
    'harness.core.analysis.x__task__mutmut_1': "cap is only computed where era.root_bonus is set; elsewhere None and False are read alike (truth values only, see score_check _88)",
    'harness.core.analysis.x__task__mutmut_2': "without a root bonus cap_sys_admin changes no score (oom_badness() reads it with bonus == 'minus30'/'three_percent'), _explain() and analyze() guard it with era.root_bonus, and score_check()'s retry without it recomputes the same score",
    'harness.core.analysis.x__task__mutmut_48': 'pgtables_bytes counts in page-size units (>= 4096 bytes): 1 // page_size == 0',
    'harness.core.analysis.x_analyze__mutmut_70': 'result() is never called with tp: the argument is always None',
    'harness.core.analysis.x_analyze__mutmut_77': "score_check() with t None returns before reading lo, hi, pkb or tp_note",
    'harness.core.analysis.x_analyze__mutmut_78': 'as _77',
    'harness.core.analysis.x_analyze__mutmut_79': 'as _77',
    'harness.core.analysis.x_analyze__mutmut_80': 'as _77',
    'harness.core.analysis.x_analyze__mutmut_237': '_candidates() does not read its tp argument (points come from the Selection)',
    'harness.core.analysis.x_analyze__mutmut_488': 'as _237',
    'harness.core.analysis.x_analyze__mutmut_439': 'as score_check _88: cap_sys_admin None and False are read alike',
    'harness.core.analysis.x_analyze__mutmut_450': "obs_task is one of tasks, so _find() finds its pid in no_caps (the same tasks): obs2 is never None",
    'harness.core.analysis.x_analyze__mutmut_527': 'lo is None whenever tp_known is False (tp_known starts as lo is not None and becomes True only with a solved lo)',
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
