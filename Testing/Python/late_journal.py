"""`medprep` whose driver writes each journal record (manifest row, statistics summary) 0.1 s late.

The tests that kill a driver mid-run wait for its first records and then kill it: with the small
cases of those tests a run journals every case within a few tens of milliseconds, so on a quiet
machine it could end between two looks. Late records keep it mid-run for a second or two whatever
the machine's speed; the workers go on meanwhile, so outputs written but not yet journaled are
part of what the rerun must handle.
"""
import sys
import time

from MedPrepLib import appendlog
from MedPrepLib.cli.main import main

DELAY = 0.1


def _late(write):
    def late_write(self, text):
        time.sleep(DELAY)
        write(self, text)
    return late_write


appendlog.AppendLog.write = _late(appendlog.AppendLog.write)

if __name__ == "__main__":  # a worker process that imports this module as its parent's main only gets the patch
    sys.exit(main())
