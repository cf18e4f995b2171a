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
                       stage: Optional[Stage] = None) -> Dict[int, Dict[str, Any]]:
    """Dataset statistics of every step that needs them, from the training cases only.

    A training case that cannot be read or fitted is left out of the statistics (and `warn` told).
    With a `stage`, training cases are kept as they were just before step `stage.index`.
    """
    training = [c for c in cases if c.training]
    statistics: Dict[int, Dict[str, Any]] = {}
    for index in pipeline.statistics_steps():
        name = pipeline.steps[index].spec.name
        if not training:
            raise MedPrepError(f"step '{name}' needs dataset statistics but no case is marked for training",
                               hint="check --split")
        arguments = [(c, pipeline, index, statistics, executor.per_host, stage) for c in training]
        parts: List[Tuple[int, Any]] = []
        sizes = [c.input_bytes() for c in training]
        for done, outcome in enumerate(executor.map(fit_job, arguments, sizes), 1):
            ok, part = outcome.value if not outcome.error else (False, outcome.error)
            if ok:
                parts.append((outcome.index, part))
            elif warn:
                warn(f"{training[outcome.index].case_id} left out of the '{name}' statistics: {part}")
            if progress:
                progress(done, len(arguments))
        # Merged in case order, so the result does not depend on which worker finished first.
        statistics[index] = pl.combine(pipeline, index, [part for _, part in sorted(parts, key=lambda x: x[0])])
    return statistics
