"""Scoring any model's answers on a build (``getok-data score``), docs/SCORING.md.

``predictions`` reads and joins prediction rows, ``rows`` lists what the build asks,
``decoders`` turns answers into masks (table or segmenter), ``scoring`` scores one row,
``metrics`` summarises per task (a registry; ``lanes`` adds ``pl``), ``gallery`` draws the best and worst, ``run``
ties them together.
"""
from .metrics import COUNTS, EMPTY_UNION, TASK_METRICS, register_metric, summarize
from .run import ScoreError, score_build
from .scoring import ROW_FIELDS, register_row_fields
from . import lanes  # noqa: F401,E402  (registers the ``pl`` task: TuSimple lane metric)
from . import captions, instances  # noqa: F401,E402  (cap: pycocoevalcap; points / boxes: HumanRef arithmetic)

__all__ = ["COUNTS", "EMPTY_UNION", "TASK_METRICS", "ROW_FIELDS", "register_metric", "register_row_fields",
           "summarize", "ScoreError", "score_build"]
