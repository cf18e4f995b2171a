"""ML preprocessing: steps (one module each), pipelines of steps, dataset statistics.

Entry point for callers (CLI, dataset runner, Slicer panel)::

    pipeline = load_pipeline("ct-liver")            # preset name, YAML/JSON file, or parsed dict
    image, label = run_pipeline(image, pipeline, label)
"""
from .pipeline import (
    Pipeline,
    list_presets,
    load_pipeline,
    load_statistics,
    run_pipeline,
    save_statistics,
)
from .registry import STEPS, describe, get_step

__all__ = ["STEPS", "Pipeline", "describe", "get_step", "list_presets", "load_pipeline",
           "load_statistics", "run_pipeline", "save_statistics"]
