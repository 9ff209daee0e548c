"""``oom-harness`` command line: ``parse`` here, the commands that run things in :mod:`.commands` and :mod:`.compare`.

Exit codes: 0 success (for ``run``: every verdict as expected), 1 a verdict not as expected,
2 bad input or environment (one-line error, no traceback), 125 a ``--kernel DIR`` that does not build
(``git bisect run`` skips it), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from harness import __version__
from harness.core.analysis import Context, analyze_all
from harness.core.parser import LogReadError, ParserBug, parse_file
from harness.errors import HarnessError
from harness.reporting.render import analysis_text

from . import commands, compare, watch

JSON_SCHEMA_VERSION = 1


def _cmd_parse(args: argparse.Namespace) -> int:
    ctx = Context(
        era=args.era,
        total_swap_pages=args.total_swap_kb // 4 if args.total_swap_kb is not None else None,
        swappiness=args.swappiness,
    )
    docs = []
    for path in args.files:
        try:
            events = list(parse_file(path, keep_lines=False))
        except LogReadError as e:
            raise HarnessError(str(e)) from None
        except ParserBug as e:
            # One line, exit 2: a report may have been lost, so no partial verdicts are printed.
            raise HarnessError(f"{path}: {e} (a parser bug: please report it with the log)") from None
        for a in analyze_all(events, ctx):
            d = a.to_dict()
            d["source"] = path
            docs.append(d)
    if args.json:
        json.dump(
            {"schema": JSON_SCHEMA_VERSION, "tool": f"oom-harness {__version__}", "events": docs}, sys.stdout, indent=1
        )
        sys.stdout.write("\n")
    else:
        if not docs:
            print("no OOM-killer report found")
        for d in docs:
            print(analysis_text(d, d["source"] if len(args.files) > 1 else ""))
            print()
        if docs:
            counts: dict[str, int] = {}
            for d in docs:
                counts[d["verdict"]] = counts.get(d["verdict"], 0) + 1
            print(f"{len(docs)} event(s): " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="oom-harness",
        description="Provoke genuine OOM kills and check the "
        "kernel's victim against a reference model of its selection.",
    )
    ap.add_argument("--version", action="version", version=f"oom-harness {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("parse", help="parse kernel logs (dmesg, kmsg, journal, syslog, serial console)")
    p.add_argument("files", nargs="+", metavar="FILE", help="log files; - reads standard input")
    p.add_argument("--json", action="store_true", help="machine-readable output (documented in README)")
    p.add_argument("--era", help="force the model era (a kernel version like 6.1, or an era label)")
    p.add_argument("--total-swap-kb", type=int, help="total swap of the machine (memcg reports omit it)")
    p.add_argument("--swappiness", type=int, help="vm.swappiness / memory.swappiness (default 60)")
    p.set_defaults(func=_cmd_parse)

    commands.register(sub)
    compare.register(sub)
    watch.register(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as e:
        print(f"oom-harness: error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        print("oom-harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
