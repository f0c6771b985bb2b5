#!/usr/bin/env python3
"""A rank that dies or stops under mpirun ends the job, naming the rank.

  mpi_failure.py MPIEXEC COMMBENCH kill|stop

Starts two ranks of `mixer-commbench --soak` (all-to-alls in a loop, a 3 s
deadline), waits until rank 0 says every rank is in the loop, then signals
rank 1: `kill` sends SIGKILL, and mpirun must exit
non-zero within 60 s naming rank 1; `stop` sends SIGSTOP, and rank 0's
deadline message must name rank 1 and the job end non-zero within 60 s.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time


def descendants(root):
    """The process ids below `root`."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rank_pid(root, rank):
    """The pid of world rank `rank` under `root`, or None."""
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if (b"mixer-commbench" in cmdline and
                f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ):
            return pid
    return None


def main():
    mpiexec, bench, mode = sys.argv[1:4]
    job = subprocess.Popen(
        [mpiexec, "-np", "2", bench, "--soak", "300", "--deadline", "3",
         "--sizes", "64K"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    output = []
    in_loop = threading.Event()

    def read():
        for line in job.stdout:
            output.append(line)
            if b"ranks in the loop" in line:
                in_loop.set()

    reader = threading.Thread(target=read)
    reader.start()
    victim = None
    try:
        # Start-up (MPI_Init) has no deadline: a rank stopped inside it
        # stalls the others there, so signal only once every rank is in the
        # loop of all-to-alls.
        if not in_loop.wait(timeout=60):
            print("the ranks never reached the loop of all-to-alls")
            return 1
        victim = rank_pid(job.pid, 1)
        if not victim:
            print("rank 1 not found")
            return 1
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
        signalled = time.monotonic()
        try:
            code = job.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print("the job still runs 60 s after rank 1 was signalled")
            return 1
        took = time.monotonic() - signalled
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        if victim:
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass
        reader.join()
    text = b"".join(output).decode(errors="replace")
    print(text)
    print(f"exit code {code}, {took:.1f} s after the signal")
    expected = (r"rank 1 with PID \d+ .*exited on signal 9" if mode == "kill"
                else r"heard nothing from rank 1 within 3 s")
    if code == 0 or not re.search(expected, text):
        print(f"expected a non-zero exit and /{expected}/")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
