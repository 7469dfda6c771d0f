"""``getok-data report``: a build, and optionally a score run, as a static HTML site (build.py)."""
from .build import ReportError, build_report

__all__ = ["ReportError", "build_report"]
