"""Where a command's jobs run (`--scheduler`, `--cluster`, `--retries`), shared by `run` and `anonymize`."""
from __future__ import annotations

import argparse
import sys
from typing import Dict, Iterable, List, Optional, Tuple


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the jobs run, shared by `run` and `anonymize`."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing Dask cluster (tcp://HOST:8786); needs medpreplib[dask] here and "
                            "on the workers, and inputs and outputs on storage every worker sees")
    where.add_argument("--cluster", metavar="local[:N]",
                       help="run on a Dask LocalCluster of N worker processes started for this run")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="run a case again up to N times when its worker process dies under it (default 2)")


def executor_from_args(args: argparse.Namespace, workers: Optional[int], preload: Iterable[str] = ()):
    from ..executor import make_executor

    return make_executor(workers, scheduler=args.scheduler, cluster=args.cluster, retries=args.retries,
                         preload=preload)


def print_workers(counts: Dict[str, int], retried: List[Tuple[str, int]]) -> None:
    """The run's summary of who did what, and which jobs ran again after their worker died."""
    if len(counts) > 1:
        print("per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(counts.items())))
    for job, times in retried:
        print(f"medprep: note: {job} ran again after its worker died ({times}x)", file=sys.stderr)
