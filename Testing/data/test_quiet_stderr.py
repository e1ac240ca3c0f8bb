"""readers.quiet_stderr from several threads (proxy.selection reads cases in a thread pool): whatever the order in
which reader threads enter and leave, stderr works again once the last one has left."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A enters, B enters, A leaves, B leaves: the order in which a save-and-restore per thread leaves fd 2 on /dev/null
# (B saved A's /dev/null and puts it back last). Run in a child: pytest captures stderr, which has no fd to swap.
CHILD = r"""
import os, sys, threading
from AutoSegCore.data.readers import quiet_stderr

a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

def a():
    with quiet_stderr():
        a_in.set(); b_in.wait()
        os.write(2, b"hidden-a\n")
    a_out.set()

def b():
    a_in.wait()
    with quiet_stderr():
        b_in.set(); a_out.wait()
        os.write(2, b"hidden-b\n")

threads = [threading.Thread(target=a), threading.Thread(target=b)]
for t in threads: t.start()
for t in threads: t.join()
os.write(2, b"stderr-is-back\n")
"""


def test_stderr_comes_back_after_overlapping_quiet_readers():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "stderr-is-back" in out.stderr
    assert "hidden" not in out.stderr          # while any reader is inside, ITK's own printing stays hidden
