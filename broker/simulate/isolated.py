"""One simulation in a child process, so that SUMO crashing ends that run and not its caller.

libsumo 1.28 segfaults now and then, the same way every time for a given run (its bluelight
device: ingolstadt 1u heavy seed 1, as the unit enters a junction whose approach has a
sidewalk lane; highway 3u light seed 1 with counted demand). In-process that killed a whole
sweep, and ``broker simulate`` with a bare "Segmentation fault". The child is forked (the
parent never starts SUMO itself), sends its progress and then its result or its exception;
a child that dies without a word was SUMO's crash.
"""

from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.connection import Connection

from broker.simulate.options import RunOptions
from broker.simulate.run import Progress, RunResult, simulate

PROGRESS = "progress"  # tag of a progress message: (PROGRESS, t, total)


def _child(opts: RunOptions, conn: Connection, with_progress: bool, theirs: Connection) -> None:
    """The child's side: progress as it goes, then the result or the exception it raised."""
    # Ctrl-C signals the whole process group: the parent stops the run (the child died with a
    # KeyboardInterrupt traceback from inside libsumo)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    theirs.close()  # the parent's end, forked: held open here, a send blocked for ever once
    # the parent had stopped reading

    def progress(t: float, total: float) -> None:
        conn.send((PROGRESS, t, total))

    try:
        conn.send(simulate(opts, progress=progress if with_progress else None))
    except Exception as exc:  # every error goes back, to be raised there
        conn.send(exc)
    finally:
        conn.close()


def run_isolated(opts: RunOptions, progress: Progress | None = None) -> RunResult | None:
    """``simulate(opts)`` in a child process; None if SUMO crashed it. An error the run raises
    (a bad recipe, a bug) is raised here, as if the run were in-process."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(opts, child, progress is not None, parent))
    proc.start()
    child.close()
    got: RunResult | Exception | None = None
    try:
        while True:
            msg = parent.recv()
            if isinstance(msg, tuple) and msg and msg[0] == PROGRESS:
                if progress is not None:
                    progress(msg[1], msg[2])
                continue
            got = msg
            break
    except EOFError:  # the child died before sending its result
        got = None
    except BaseException:  # Ctrl-C (or a progress callback's error): the run is abandoned
        proc.kill()  # the join below waited for a child nobody read from
        raise
    finally:
        parent.close()
        proc.join()
    if isinstance(got, Exception):
        raise got
    if got is None and proc.exitcode is not None and proc.exitcode > 0:  # could not send it
        raise RuntimeError(f"{opts.scenario} seed {opts.seed}: the run failed (its error above)")
    return got
