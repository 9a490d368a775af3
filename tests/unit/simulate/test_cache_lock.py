"""The scenario cache under two runs at once: builds are serialised, shared files never torn."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from broker.simulate.network import cache_lock, write_if_changed


def _hold(directory: str, log: str, name: str) -> None:
    """Take the cache lock, then mark start and end in ``log`` with a pause between."""
    with cache_lock(Path(directory)):
        with open(log, "a") as f:
            f.write(f"start {name}\n")
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(f"end {name}\n")


def test_two_processes_never_hold_a_directory_lock_together(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(str(tmp_path / "cache"), str(log), n))
             for n in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = log.read_text().split()
    # two words per line: "start a end a start b end b" in some order of a and b
    marks = [" ".join(lines[i : i + 2]) for i in range(0, len(lines), 2)]
    assert len(marks) == 4
    first = marks[0].split()[1]
    second = "b" if first == "a" else "a"
    assert marks == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]


def test_a_shared_file_is_replaced_whole_and_left_alone_when_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "ev.add.xml"
    write_if_changed(path, "<additional/>\n")
    inode = path.stat().st_ino
    write_if_changed(path, "<additional/>\n")
    assert path.stat().st_ino == inode  # the same text: not written again
    write_if_changed(path, "<additional><vType id='x'/></additional>\n")
    assert path.read_text() == "<additional><vType id='x'/></additional>\n"
    assert path.stat().st_ino != inode  # a new file moved into place, not the old one truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.add.xml"]
