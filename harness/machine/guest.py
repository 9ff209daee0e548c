"""Entry point inside the QEMU guest: run scenario files with the shared engine, print records.

The VM runner on the host calls ``python3 -m harness.machine.guest FILE...`` through the guest agent.
Each record is printed as one line ``@@OOMH-RECORD@@ <json>`` so it survives any other output.
Inside the guest the harness may change sysctls and run without a memory limit: the whole
machine is a throw-away VM.
"""

from __future__ import annotations

import json
import platform
import sys

from harness.errors import HarnessError

from .engine import EngineOptions, protect_self, run_scenario
from .record import ScenarioRecord
from .scenario import load_scenario

#: Prefix of the one stdout line that carries a scenario's record (the VM runner looks for it).
RECORD_MARK = "@@OOMH-RECORD@@ "


def main(argv: list[str]) -> int:
    protect_self()
    for path in argv:
        try:
            sc = load_scenario(path)
            rec = run_scenario(sc, EngineOptions(backend="vm", allow_unlimited=True, allow_sysctl=True, warm_up=False))
        except HarnessError as e:
            rec = ScenarioRecord(scenario=path, backend="vm", kernel=platform.release())
            rec.set_verdict("error", "error", False, str(e))
        sys.stdout.write(RECORD_MARK + json.dumps(rec.to_dict(), default=str) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
