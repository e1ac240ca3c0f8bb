"""`python -m AutoSegCore ...` is the same as the `autoseg` command (used for child processes)."""
import sys

from AutoSegCore.cli import main

if __name__ == "__main__":
    sys.exit(main())
