"""Envelopes around kernel messages: every source the parser accepts reduces to the bare message."""

from __future__ import annotations

import pytest

from harness.core.logformat import LogLine, normalize

MSG = "Out of memory: Killed process 42 (a b) total-vm:4kB, anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"


@pytest.mark.parametrize(
    ("raw", "ts", "caller", "seq"),
    [
        # /dev/kmsg records, with and without caller=
        (f"6,1234,5678901,-;{MSG}", 5.678901, None, 1234),
        (f"6,1234,5678901,-,caller=T123;{MSG}", 5.678901, "T123", 1234),
        (f"3,7,1000,c,caller=C1;{MSG}", 0.001, "C1", 7),
        # dmesg timestamps and caller ids
        (f"[ 1234.567890] {MSG}", 1234.56789, None, None),
        (f"[ 1234.567890] [  T123] {MSG}", 1234.56789, "T123", None),
        (f"[ 1234.567890] [    C1] {MSG}", 1234.56789, "C1", None),
        (f"[  T123] {MSG}", None, "T123", None),
        (f"[    C1] {MSG}", None, "C1", None),
        # console: no space between timestamp and caller id
        (f"[    0.000000][    T0] {MSG}", 0.0, "T0", None),
        (f"[   12.345678][ T4567] {MSG}", 12.345678, "T4567", None),
        # dmesg -T in several locales
        (f"[Wed Nov 25 14:10:55 2026] {MSG}", None, None, None),
        (f"[Thu Apr  1 16:45:10 2021] {MSG}", None, None, None),
        (f"[Tue Apr  6 16:45:10 2021] [  T12] {MSG}", None, "T12", None),
        (f"[Sun Jan  4 01:02:03 2026] {MSG}", None, None, None),
        (f"[dim. 19 avril 18:03:30 2026] {MSG}", None, None, None),
        (f"[jeu. 19 nov. 18:03:30 2026] {MSG}", None, None, None),
        (f"[月  1月 26 10:00:00 2026] {MSG}", None, None, None),
        (f"[木 11月 26 23:59:59 2026] {MSG}", None, None, None),
        # dmesg -x / --decode: facility and level names, padded, before any dmesg form
        (f"kern  :warn  : [Thu Aug 17 17:29:27 2023] {MSG}", None, None, None),
        (f"    kern  :err   : [Thu Aug 17 17:29:27 2023] {MSG}", None, None, None),
        (f"kern  :info  : [  12.345678] {MSG}", 12.345678, None, None),
        (f"user  :notice: {MSG}", None, None, None),
        (f"local7:debug : {MSG}", None, None, None),
        # dmesg --time-format iso
        (f"2026-11-25T14:10:55,123456+00:00 {MSG}", None, None, None),
        (f"2026-11-25T14:10:55,123456+0100 {MSG}", None, None, None),
        # syslog / journalctl with hostnames
        (f"Nov 25 14:10:55 host kernel: {MSG}", None, None, None),
        (f"Nov  5 14:10:55 web-01.example.com kernel: [  12.345678] {MSG}", 12.345678, None, None),
        (f"Nov 25 14:10:55 133-130-xxx-xx kernel[0]: {MSG}", None, None, None),
        (f"2026-11-25T14:10:55.123456+00:00 host.example kernel: {MSG}", None, None, None),
        (f"2026-11-25T14:10:55+0100 node1 kernel: [ 1.000000] {MSG}", 1.0, None, None),
        # raw console level prefixes
        (f"<4>{MSG}", None, None, None),
        (f"<4>[  1.000000] {MSG}", 1.0, None, None),
        (f"<12>[  1.000000][  T77] {MSG}", 1.0, "T77", None),
        # serial capture: user-space output shares the line with the kernel message
        (f"stress: info: [123] dispatching hogs[   12.345678] {MSG}", 12.345678, None, None),
        (f"$ ./hog [1.5]...[  99.000001] {MSG}", 99.000001, None, None),
        # copy-paste indentation (forum code blocks, dmesg continuation lines)
        (f"  {MSG}", None, None, None),
        (f"  [271641.879153] {MSG}", 271641.879153, None, None),
        # no envelope at all
        (MSG, None, None, None),
    ],
)
def test_envelope_is_removed(raw: str, ts: float | None, caller: str | None, seq: int | None) -> None:
    ll = normalize(raw, 7)
    assert ll is not None
    assert ll.text == MSG
    assert ll.lineno == 7
    assert ll.caller == caller
    assert ll.seq == seq
    if ts is None:
        assert ll.ts is None
    else:
        assert ll.ts == pytest.approx(ts)


@pytest.mark.parametrize("raw", [" SUBSYSTEM=pci", " DEVICE=+pci:0000:00:01.0", "  DEVICE=c1:2", " SUBSYSTEM_X=y"])
def test_kmsg_dictionary_continuations_are_dropped(raw: str) -> None:
    assert normalize(raw) is None


@pytest.mark.parametrize("raw", ["", "\n", "\r\n", "   ", "\t"])
def test_empty_lines_give_empty_text(raw: str) -> None:
    ll = normalize(raw, 3)
    assert isinstance(ll, LogLine)
    assert ll.text == ""


def test_user_text_with_brackets_is_not_a_timestamp() -> None:
    # "[1.5]" lacks printk's six fractional digits: not a timestamp, line unchanged
    assert normalize("foo [1.5] bar").text == "foo [1.5] bar"


def test_trailing_whitespace_and_crlf_are_stripped() -> None:
    assert normalize(f"[    1.000000] {MSG}  \r\n").text == MSG


def test_memory_stat_continuation_line_becomes_key_value() -> None:
    # `dmesg -T` prints the rest of a multi-line record indented and without a timestamp
    assert normalize("                           file_mapped 135168").text == "file_mapped 135168"


def test_kmsg_record_with_level_prefix_inside() -> None:
    ll = normalize("12,5,6,-;<4>text")
    assert (ll.text, ll.seq) == ("text", 5)


def test_table_row_text_survives_every_envelope() -> None:
    row = "[   1913]     0  1913    28825    17788      768     1532     15488   188416        0             0 python3"
    for raw in (
        row,
        f"[   91.276002] {row}",
        f"Nov 25 14:10:55 h kernel: {row}",
        f"6,9,1,-;{row}",
        f"[   91.276002][ T1913] {row}",
    ):
        assert normalize(raw).text == row, raw
