"""The repair stage's classes one by one, on genuine reports: what each undoes, and what it says.

(The mangling suite, tests/test_mangling.py, checks whole reports under every mangling; these
tests pin the individual rules and their reporting.)
"""

from __future__ import annotations

import random
from pathlib import Path

import mangle as M

from harness.core.analysis import analyze_all
from harness.core.logformat import normalize
from harness.core.parser import parse_stream, parse_text
from harness.core.repair import Repairer, _split_run_on, qp_chunks, qp_decode, shape_valid

FIX = Path(__file__).parent / "fixtures"
VM = FIX / "vm"


def verdicts(text: str) -> list[tuple[object, object, str]]:
    return [
        (d["observed_victim"], d["predicted_victim"], d["verdict"])
        for d in (a.to_dict() for a in analyze_all(parse_text(text, keep_lines=False)))
    ]


def clean(name: str) -> list[str]:
    return M.dmesg_lines(VM / name)


def repair_lines(lines: list[str]) -> list[str]:
    r = Repairer()
    text = "\n".join(lines)
    r.engage(text, 0, len(text))
    out = []
    for i, raw in enumerate(lines, 1):
        out += [x.text for x in r.push(raw, i)]
    return out + [x.text for x in r.flush()]


# --- grammar ------------------------------------------------------------------------------------


def test_grammar_knows_whole_and_cut_report_lines() -> None:
    killed = (
        "Memory cgroup out of memory: Killed process 139 (small) total-vm:26008kB, anon-rss:14976kB, "
        "file-rss:0kB, shmem-rss:5760kB, UID:65534 pgtables:84kB oom_score_adj:800"
    )
    assert shape_valid(killed) is True
    assert shape_valid(killed.replace("shmem-rss", "shme m-rss")) is False
    assert shape_valid("big invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0") is True
    assert shape_valid("big invoked oom-kil") is False
    assert shape_valid("Memory cgroup out of") is False  # only a head
    header = (
        "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name"
    )
    assert shape_valid(header) is True
    assert shape_valid(header.replace("oom_score_adj", "oom_score_ad j")) is False
    row = "[    139] 65534   139     6502     5184     3744        0      1440    86016        0           800 small"
    assert shape_valid(row, 10) is True
    assert shape_valid(row.replace(" 6502", " 65 02"), 10) is False  # a cut inside a number
    assert shape_valid(row.replace("800 small", "-"), 10) is False  # "-1000" cut after its sign
    assert shape_valid("usb 1-1: new high-speed USB device number 3 using xhci_hcd") is None


# --- rejoining ------------------------------------------------------------------------------------


def test_mid_token_cuts_are_glued_without_a_space() -> None:
    lines = clean("6.12-adj-positive.log")
    got = repair_lines(M.hard_wrap(lines, 80))
    assert got == [normalize(x).text for x in lines]  # type: ignore[union-attr]


def test_mail_wrapped_lines_get_their_space_back() -> None:
    """Up to the run of spaces a mail client breaks at (one space comes back), every line as sent."""
    lines = clean("7.2-larger-of-two.log")
    got = repair_lines(M.mail_wrap(lines, 72))
    assert [" ".join(x.split()) for x in got] == [" ".join(normalize(x).text.split()) for x in lines]  # type: ignore[union-attr]


def test_stat_lines_of_one_record_are_not_glued() -> None:
    """memory.stat printed as one record: dmesg shows its lines without timestamps."""
    text = "[  6.1] Memory cgroup stats for /x:\nanon 66793472\nfile 0\n[  6.2] Tasks state (memory values in pages):"
    assert repair_lines(text.split("\n")) == [
        "Memory cgroup stats for /x:",
        "anon 66793472",
        "file 0",
        "Tasks state (memory values in pages):",
    ]


def test_an_undecidable_join_is_reported() -> None:
    """A comm cut in two, no other wrapping in the paste to tell how it was cut: reported."""
    lines = [
        "[  1.000000] Out of memory: Killed process 925 (stre",
        "ss) total-vm:10kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    ]
    (ev,) = parse_text("\n".join(lines) + "\n")
    assert ev.repairs.lines_rejoined == 1
    assert len(ev.repairs.ambiguous_joins) == 1 and "(stre" in ev.repairs.ambiguous_joins[0]


# --- envelopes ------------------------------------------------------------------------------------


def test_rsyslog_escaped_newlines_are_split() -> None:
    """rsyslog forwards a multi-line record with #012 for each newline."""
    msgs = [normalize(x).text for x in clean("6.12-adj-positive.log")]  # type: ignore[union-attr]
    out, i = [], 0
    while i < len(msgs):
        if msgs[i].startswith("Memory cgroup stats for"):
            j = i + 1
            while j < len(msgs) and not msgs[j].startswith("Tasks state"):
                j += 1
            out.append("#012".join(msgs[i + 1 : j]))  # the stats as one forwarded record
            out.insert(-1, msgs[i])
            i = j
            continue
        out.append(msgs[i])
        i += 1
    syslog = "\n".join(f"Nov 25 14:10:55 guest kernel: {m}" for m in out) + "\n"
    (ev,) = parse_text(syslog)
    assert ev.memcg is not None and ev.memcg.stats.get("anon") == 66793472
    assert ev.repairs.prefixes_stripped.get("rsyslog") == 1
    assert verdicts(syslog) == verdicts("\n".join(clean("6.12-adj-positive.log")))


def test_reports_of_two_hosts_in_one_syslog_file_do_not_mix() -> None:
    a = [normalize(x).text for x in clean("6.12-adj-positive.log")]  # type: ignore[union-attr]
    b = [normalize(x).text for x in clean("7.2-larger-of-two.log")][:120]  # type: ignore[union-attr]
    rnd = random.Random(3)
    la = [f"Nov 25 14:10:55 alpha kernel: {m}" for m in a]
    lb = [f"Nov 25 14:10:55 beta kernel: {m}" for m in b]
    merged = []
    while la or lb:
        src = la if (la and (not lb or rnd.random() < 0.5)) else lb
        merged.append(src.pop(0))
    events = parse_text("\n".join(merged) + "\n")
    alpha = [e for e in events if e.host == "alpha"]
    assert [k.pid for e in alpha for k in e.kills] == [139]
    assert [r.pid for r in alpha[0].table] == [139, 140]
    assert all(e.host in ("alpha", "beta") for e in events)


def test_journal_short_precise_and_monotonic_forms() -> None:
    msgs = [normalize(x).text for x in clean("6.12-adj-positive.log")]  # type: ignore[union-attr]
    ref = verdicts("\n".join(clean("6.12-adj-positive.log")))
    precise = "\n".join(f"Nov 25 14:10:55.{i:06d} guest kernel: {m}" for i, m in enumerate(msgs))
    mono = "\n".join(f"[{6 + i / 1e4:12.6f}] guest kernel: {m}" for i, m in enumerate(msgs))
    assert verdicts(precise) == ref and verdicts(mono) == ref


def test_kmsg_records_with_caller_ids_and_escaped_newlines() -> None:
    """Raw /dev/kmsg with caller= fields: 5.10 prints memory.stat as one record (\\x0a inside)."""
    raw = (VM / "5.10-global-noswap.log").read_text()
    with_caller = "\n".join(
        (x.replace(",-;", ",-,caller=T214;", 1) if x[:1].isdigit() else x) for x in raw.splitlines()
    )
    assert verdicts(with_caller) == verdicts(raw)
    (ev,) = [e for e in parse_text(with_caller) if e.kills][:1]
    assert ev.caller == "T214"


# --- excerpts and patched kernels -----------------------------------------------------------------


def test_excerpt_from_task_in_keeps_the_memcg_limit() -> None:
    text = (FIX / "synthetic" / "3.4-memcg-v1-memsw.log").read_text().splitlines()
    start = next(i for i, x in enumerate(text) if "Task in " in x)
    (ev,) = parse_text("\n".join(text[start:]) + "\n")
    assert ev.memcg is not None and ev.memcg.limit_kb is not None and ev.memcg.task_in
    assert ev.trigger is None and "header line (`invoked oom-killer`)" in ev.missing


def test_patched_kernel_kill_line_is_quoted_not_guessed() -> None:
    lines = clean("6.12-adj-positive.log")
    patched = [
        x.replace(
            "Memory cgroup out of memory: Killed process 139 (small)",
            "oom_kill_process: would have killed process 139 (small), but continuing instead",
        ).split(" total-vm")[0]
        if "Killed process" in x
        else x
        for x in lines
    ]
    patched.insert(5, "[    6.235999] oomdbg: select_bad_process: 2 candidates")
    (ev,) = parse_text("\n".join(patched) + "\n")
    assert ev.kills == [] and [r.pid for r in ev.table] == [139, 140] and ev.table_complete
    assert any("would have killed process 139" in u for u in ev.repairs.unrecognised)
    (a,) = analyze_all([ev])
    assert a.to_dict()["predicted_victim"]["pid"] == 139


def test_quoted_printable_soft_breaks_then_escapes() -> None:
    # join first: "=3D=\n" is an escape then a soft break, not "=" followed by a break
    got = qp_decode("a gfp_mask=3D=\n0x100cca(GFP_KERNEL), order=3D0\n")
    assert got == "a gfp_mask=0x100cca(GFP_KERNEL), order=0\n"
    assert qp_decode("caf=C3=A9 x=20=\ny\n") == "café x y\n"


def test_quoted_printable_needs_evidence() -> None:
    """A netconsole pr_cont record cut after "cpuset=" ends in "=" too: no "=3D", no decoding."""
    text = "[ 1146.798699] emerge cpuset=\n[ 1146.798700] /foo mems_allowed=0\n"
    r = Repairer()
    assert "".join(qp_chunks([text], r)) == text and not r.qp


def test_quoted_printable_across_chunk_boundaries() -> None:
    lines = M.quoted_printable(M.quote(clean("5.10-global-noswap.log")))
    text = "\n".join(lines) + "\n"
    want = verdicts("\n".join(clean("5.10-global-noswap.log")) + "\n")
    for size in (7, 64, 1000):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        events = list(parse_stream(chunks, keep_lines=False))
        docs = [a.to_dict() for a in analyze_all(events)]
        got = [(d["observed_victim"], d["predicted_victim"], d["verdict"]) for d in docs]
        assert got == want, size
        assert all(e.repairs.prefixes_stripped.get("quoted-printable") for e in events)


def test_print_wrap_marker_dropped_where_the_pieces_meet() -> None:
    text = (
        "Oct 14 10:22:40 localhost kernel: Memory cgroup out of memory:\n"
        " \u21aaKill process 2687 (sh) score 0 or sacrifice child\n"
    )
    r = Repairer()
    out = r.push(text.splitlines()[0], 1) + r.push(text.splitlines()[1], 2) + r.flush()
    assert [ll.text for ll in out] == ["Memory cgroup out of memory: Kill process 2687 (sh) score 0 or sacrifice child"]
    assert "wrap-marker" in out[0].fixes


def test_elision_inside_the_table_makes_it_incomplete() -> None:
    """A poster's "…"/"[...]"/"<snip>" or grep's "--" between rows: rows are missing, so the
    table is incomplete and a victim absent from it is undecidable, not a mismatch."""
    lines = clean("5.10-global-noswap.log")
    head = next(i for i, x in enumerate(lines) if "pid  ]" in x or "pid ]" in x)
    victim = parse_text("\n".join(lines) + "\n")[0].kills[0].pid
    for mark in ("…", "...", "[...]", "<snip>", "--"):
        cut = [x for x in lines if f"[{victim:>7}]" not in x]
        cut.insert(head + 2, mark)
        events = parse_text("\n".join(cut) + "\n")
        assert not events[0].table_complete, mark
        assert any("elision" in m for m in events[0].missing), events[0].missing
        assert verdicts("\n".join(cut) + "\n")[0][2] == "undecidable", mark
    # outside the table the same marks change nothing
    outside = lines[:3] + ["--", "..."] + lines[3:]
    assert verdicts("\n".join(outside) + "\n") == verdicts("\n".join(lines) + "\n")


def test_run_together_records_split_only_where_unambiguous() -> None:
    glued = "Killed process 1 (a)Out of memory: kill process 2 (b) score 7 or a childKilled process 2 (b)"
    want = ["Killed process 1 (a)", "Out of memory: kill process 2 (b) score 7 or a child", "Killed process 2 (b)"]
    assert _split_run_on(glued) == want
    ts = "[  5.000001] Task in /x killed as a result of limit of /x[  5.000002] memory: usage 1kB, limit 1kB, failcnt 0"
    assert _split_run_on(ts) == [
        "[  5.000001] Task in /x killed as a result of limit of /x",
        "[  5.000002] memory: usage 1kB, limit 1kB, failcnt 0",
    ]
    # kept whole: the kernel's own "Memory cgroup out of memory: Killed process", an envelope's
    # "-;" or "] " before a kill line, a timestamp-like text going back in time, one in a line without
    for whole in (
        "[  5.000001] Memory cgroup out of memory: Killed process 2 (b) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        "4,103,10000003,-;Out of memory: Killed process 2 (b) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        "[  5.000001] trace: saw [  4.000000] earlier, then [  3.000000]",
        "foo bar baz quux: stamp [  4.000000] inside a line that has no envelope",
        "Nov  2 11:52:13 slesk kernel: ok",
    ):
        assert _split_run_on(whole) == [whole], whole
    sys_two = "Nov  2 11:52:13 slesk kernel:  [<c011ad45>] __wake_up+0x2a/0x3d Nov  2 11:52:13 slesk kernel: x"
    assert _split_run_on(sys_two)[1] == "Nov  2 11:52:13 slesk kernel: x"


def test_quoted_printable_not_guessed_from_a_genuine_log() -> None:
    """"=3D" and a line ending in "=" in a log full of bare "=" (gfp_mask=, order=): not QP."""
    lines = clean("5.10-global-noswap.log")
    text = "\n".join([*lines[:5], "[    9.000000] foo: id=3D", "[    9.000001] emerge cpuset=", *lines[5:]]) + "\n"
    r = Repairer()
    assert "".join(qp_chunks([text], r)) == text and not r.qp
