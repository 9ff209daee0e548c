"""``oom-harness watch``: explanations of OOM kills as they happen, from /dev/kmsg, a growing file or stdin.

The kmsg test provokes genuine host OOMs (``oom-harness run single-hog`` in a subprocess) while
``watch`` reads /dev/kmsg from its current end.  The others replay recorded kernel logs.
"""

from __future__ import annotations

import errno
import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli.watch import FileSource, Gap, KmsgSource, Watcher
from harness.core.analysis import Context
from harness.core.parser import parse_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
LOGS = [FIX / "vm" / "5.10-mlocked.log", FIX / "vm" / "5.10-oom-group.log", FIX / "vm" / "6.1-cpuset-node1.log"]


def _watch(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", "watch", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _ready(p: subprocess.Popen[str]) -> None:
    line = p.stderr.readline()  # type: ignore[union-attr]
    assert "watching" in line, line


def _stop(p: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str]:
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    return out, err


def _objects(out: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in out.splitlines() if ln.strip()]


def test_stdin_gives_what_parse_gives() -> None:
    for log in LOGS:
        want = [e.kills[0].pid if e.kills else None for e in parse_file(str(log))]
        r = subprocess.run([sys.executable, "-m", "harness", "watch", "--file", "-", "--json"], cwd=ROOT,
                           input=log.read_text(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        objs = _objects(r.stdout)
        assert [o["type"] for o in objs] == ["oom"] * len(want)
        assert [(o["observed_victim"] or {}).get("pid") for o in objs] == want
        assert all(o["verdict"] in ("match", "no-victim") for o in objs), [o["reason"] for o in objs]
        assert f"{len(want)} OOM event(s), 0 gap(s)" in r.stderr


def test_text_output_explains_and_says_proc_is_gone() -> None:
    r = subprocess.run([sys.executable, "-m", "harness", "watch", "--file", "-"], cwd=ROOT,
                       input=LOGS[0].read_text(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert r.stdout.count("== OOM kill seen") == 2
    for needle in ("predicted: 233 (locked)   observed: 233 (locked)   verdict: MATCH", "reason: highest points",
                   "rank  pid  name", "the live /proc state of the tasks is gone", "note: second kill"):
        assert needle in r.stdout, needle


def test_follows_a_growing_file_through_truncation_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("[    1.000000] old noise before the watch started\n" + LOGS[0].read_text())
    p = _watch("--file", str(log), "--json", "--settle", "0.3")
    try:
        _ready(p)
        text = LOGS[1].read_text()
        half = len(text) // 2
        with open(log, "a") as f:  # a report written in two bursts is still one event
            f.write(text[:half])
            f.flush()
            time.sleep(0.1)
            f.write(text[half:])
        time.sleep(1.0)
        log.write_text("")  # truncated in place (logrotate copytruncate)
        time.sleep(0.5)
        log.write_text(LOGS[2].read_text())
        time.sleep(1.0)
        log.rename(tmp_path / "kern.log.1")  # rotated: a new file under the name
        log.write_text(LOGS[0].read_text())
        time.sleep(1.5)
    finally:
        out, err = _stop(p)
    objs = _objects(out)
    got = [o["kernel"][:3] + ":" + str((o["observed_victim"] or {}).get("name")) for o in objs]
    n = [len(list(parse_file(str(x)))) for x in LOGS]
    # nothing of what was there before the watch; then LOGS[1], LOGS[2], LOGS[0] again
    assert len(objs) == n[1] + n[2] + n[0], got
    assert "OOM event(s), 0 gap(s)" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_flushes_the_pending_report_and_exits_0(sig: int) -> None:
    """A report still waiting for the log to settle is explained before watch exits on SIGINT/SIGTERM."""
    log = LOGS[2]
    want = [e.kills[0].pid if e.kills else None for e in parse_file(str(log))]
    p = _watch("--file", "-", "--json", "--settle", "600", stdin=subprocess.PIPE)
    try:
        _ready(p)
        p.stdin.write(log.read_text())  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]  # stdin stays open: no end of input to flush at
        time.sleep(1.5)
        assert not select.select([p.stdout], [], [], 0)[0], "printed before the signal: not a test of the flush"
    finally:
        out, err = _stop(p, sig)
    objs = _objects(out)
    assert [(o["observed_victim"] or {}).get("pid") for o in objs] == want, out
    assert f"{len(want)} OOM event(s), 0 gap(s)" in err and "Traceback" not in err, err


class _FakeKmsg:
    """os.read stand-in: kmsg records, with an overrun (EPIPE), a sequence jump, the end (EAGAIN) in between."""

    def __init__(self, records: list[str | int]) -> None:
        self.items = list(records)

    def __call__(self, fd: int, n: int) -> bytes:
        if not self.items:
            raise BlockingIOError
        it = self.items.pop(0)
        if it == errno.EPIPE:
            raise OSError(errno.EPIPE, "Broken pipe")
        if it == errno.EAGAIN:
            raise BlockingIOError
        return str(it).encode()


def test_kmsg_overrun_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    lines = [ln for ln in LOGS[0].read_text().splitlines() if ln.strip()]
    recs: list[str | int] = []
    seq = 100
    for i, ln in enumerate(lines):
        text = ln.split("] ", 1)[1] if "] " in ln else ln
        recs.append(f"4,{seq},{22_000_000 + i},-;{text}\n")
        seq += 1
        if i == 3:
            recs.append(errno.EPIPE)  # the ring buffer wrapped under us: the next record read is 7 further on
            seq += 7
        if i == 10:
            seq += 5  # records lost without EPIPE: the sequence number says so
    fake = tmp_path / "kmsg"
    fake.write_text("")
    src = KmsgSource(str(fake), from_start=True, read=_FakeKmsg(recs))
    out: list[dict[str, Any]] = []
    w = Watcher(Context(), out.append, settle_s=0.0)
    for item in src.poll(0.1):
        w.feed(item)
    w.flush()
    src.close()
    gaps = [o for o in out if o["type"] == "gap"]
    assert [g["reason"].split(":")[0] for g in gaps] == ["kmsg overrun", "kmsg sequence jumped from 117 to 123"]
    assert [g["lost_records"] for g in gaps] == [7, 5]  # one gap per overrun, with its count
    events = [o for o in out if o["type"] == "oom"]
    assert len(events) == 2  # both reports still come out ...
    assert not events[0]["complete"] and "lines lost (kmsg sequence gap)" in events[0]["missing"]  # ... flagged
    assert isinstance(Gap("x"), Gap)


def test_an_overrun_before_the_first_record_still_counts_what_was_lost(tmp_path: Path) -> None:
    """Opened "from now", the source reads to the end of what the ring holds (keeping the last sequence
    number), so a reader stalled before its first record still learns how many records it lost."""
    old = [f"6,{seq},{seq * 1000},-;old record {seq}\n" for seq in range(1, 6)]
    fake = tmp_path / "kmsg"
    fake.write_text("")
    reads = _FakeKmsg([*old, errno.EAGAIN, errno.EPIPE, "6,50,50000,-;first record left after the wrap\n"])
    src = KmsgSource(str(fake), read=reads)
    assert src.last_seq == 5
    got = list(src.poll(0.1))
    src.close()
    assert isinstance(got[0], Gap) and got[0].lost == 44 and got[0].why.startswith("kmsg overrun")
    assert [g.text for g in got[1:]] == ["first record left after the wrap"]  # type: ignore[union-attr]


def test_an_overrun_with_nothing_after_it_is_reported_without_a_count(tmp_path: Path) -> None:
    fake = tmp_path / "kmsg"
    fake.write_text("")
    src = KmsgSource(str(fake), from_start=True, read=_FakeKmsg([errno.EPIPE]))
    got = list(src.poll(0.1))
    src.close()
    assert len(got) == 1 and isinstance(got[0], Gap) and got[0].lost is None


@pytest.mark.slow
def test_memory_stays_bounded_over_a_long_stream(tmp_path: Path) -> None:
    """34 MB of kernel noise with 45 OOM reports in it: peak RSS as for 1 MB (no line is kept)."""
    noise = "".join(f"[{i / 1000:12.6f}] eth0: link is up, 1000 Mbps full duplex, flow control rx/tx {i}\n"
                    for i in range(10_000))  # ~0.9 MB
    report = LOGS[0].read_text()

    def peak(copies: int) -> tuple[int, int]:
        f = tmp_path / f"stream-{copies}.log"
        with open(f, "w") as out:
            for _ in range(copies):
                out.write(noise)
                out.write(report)
        code = ("import resource, subprocess, sys\n"
                "r = subprocess.run([sys.executable, '-m', 'harness', 'watch', '--file', '-', '--json'],"
                " stdin=open(sys.argv[1]), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.stdout.count(b'\\n'))")
        r = subprocess.run([sys.executable, "-c", code, str(f)], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
        kb, n = map(int, r.stdout.split())
        return kb, n

    small, n1 = peak(1)
    big, n45 = peak(45)
    assert n1 == 2 and n45 == 90
    assert big - small < 8 * 1024, (small, big)


@pytest.mark.root
def test_genuine_host_ooms_from_kmsg(host: None, no_debris: None, tmp_path: Path) -> None:
    p = _watch("--json")
    try:
        _ready(p)
        for _ in range(2):
            r = subprocess.run([sys.executable, "-m", "harness", "run", "single-hog", "--results",
                                str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stdout + r.stderr
        time.sleep(1.5)  # > --settle: the last report is flushed
    finally:
        out, err = _stop(p, signal.SIGINT)
    ours = [o for o in _objects(out) if o["type"] == "oom" and "single-hog" in (o.get("oom_memcg") or "")]
    assert len(ours) == 2, out
    for o in ours:
        assert o["verdict"] == "match" and o["observed_victim"]["name"] == "hog", o["reason"]
        assert o["kind"] == "memcg" and o["complete"]
    rows = [json.loads(ln) for d in sorted((tmp_path / "results").iterdir())
            for ln in (d / "verdicts.jsonl").read_text().splitlines()]
    assert sorted(o["observed_victim"]["pid"] for o in ours) == sorted(r["observed_victim"]["pid"] for r in rows)
    assert "OOM event(s)" in err


def test_file_source_cuts_endless_lines(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"x" * (200 * 1024) + b"\n[    1.0] after\n")
    src = FileSource(str(f), from_start=True)
    got = [ll for _ in range(5) for ll in src.poll(0.01)]
    src.close()
    assert [len(g.text) for g in got][:1] == [64 * 1024] and got[-1].text == "after"
