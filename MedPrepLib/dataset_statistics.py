"""The statistics pass of a dataset run, as map and reduce.

Each training case's job (on whichever worker) returns a small summary for a step: counts, sums and
sums of squares in float64, a capped sample, landmarks (see each step's `fit`). The driver merges
them in case order (`pipeline.combine`), so the statistics do not depend on which worker finished
first, nor on the engine: a Dask cluster gives those of a local run.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .cases import Case, read_case
from .errors import MedPrepError
from .executor import Executor, limit_threads
from .preprocess import pipeline as pl
from .stage import Stage
from .statistics_journal import SummaryJournal
from .volume import Volume


def fit_job(case: Case, pipeline: pl.Pipeline, index: int, statistics: Dict[int, Dict[str, Any]],
            per_host: int, stage: Optional[Stage] = None) -> Tuple[bool, Any]:
    """(True, this case's share of the statistics) or (False, why it could not give one)."""
    try:
        limit_threads(per_host)
        image, label = read_case(case)
        keep = None
        if stage is not None and stage.index == index:
            def keep(image: Volume, prepared_label: Optional[Volume]) -> None:
                stage.save(case.case_id, image, prepared_label)
        return True, pl.fit_case(image, label, pipeline, index, statistics, keep)
    except MedPrepError as exc:
        return False, exc.one_line()
    except Exception as exc:  # noqa: BLE001 - one broken case must not stop the others
        return False, f"internal error: {type(exc).__name__}: {exc}"


def compute_statistics(cases: List[Case], pipeline: pl.Pipeline, executor: Executor,
                       progress: Optional[Callable[[int, int], None]] = None,
                       warn: Optional[Callable[[str], None]] = None,
                       stage: Optional[Stage] = None,
                       journal: Optional[SummaryJournal] = None) -> Dict[int, Dict[str, Any]]:
    """Dataset statistics of every step that needs them, from the training cases only.

    A training case that cannot be read or fitted is left out of the statistics (and `warn` told).
    With a `stage`, training cases are kept as they were just before step `stage.index`. With a
    `journal`, summaries it holds are taken from it and those computed are added to it as they
    arrive (see `statistics_journal`).
    """
    training = [c for c in cases if c.training]
    statistics: Dict[int, Dict[str, Any]] = {}
    for index in pipeline.statistics_steps():
        name = pipeline.steps[index].spec.name
        if not training:
            raise MedPrepError(f"step '{name}' needs dataset statistics but no case is marked for training",
                               hint="check --split")
        parts: Dict[int, Any] = {}  # by position among the training cases
        for i, c in enumerate(training):
            for part in journal.found(c, index, statistics) if journal is not None else []:
                parts[i] = part
        todo = [i for i in range(len(training)) if i not in parts]
        arguments = [(training[i], pipeline, index, statistics, executor.per_host, stage) for i in todo]
        sizes = [training[i].input_bytes() for i in todo]
        failures: List[str] = []
        if progress and parts:
            progress(len(parts), len(training))
        for done, outcome in enumerate(executor.map(fit_job, arguments, sizes), len(parts) + 1):
            case = training[todo[outcome.index]]
            ok, part = outcome.value if not outcome.error else (False, outcome.error)
            if ok:
                parts[todo[outcome.index]] = part
                if journal is not None:
                    journal.append(case, index, statistics, part)
            else:
                failures.append(f"{case.case_id}: {part}")
                if warn:
                    warn(f"{case.case_id} left out of the '{name}' statistics: {part}")
            if progress:
                progress(done, len(training))
        if not parts and failures:
            raise MedPrepError(f"step '{name}' needs dataset statistics but every training case failed "
                               f"(the first, {failures[0]})", hint="fix that case's problem, then run again")
        # Merged in case order, so the result does not depend on which worker finished first, nor on
        # which summaries came from the journal.
        statistics[index] = pl.combine(pipeline, index, [parts[i] for i in sorted(parts)])
    return statistics
