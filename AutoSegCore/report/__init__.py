"""The search report: ``build_report(DIR)`` writes a self-contained ``report.html`` and ``summary.json``."""
from AutoSegCore.report.builder import build_report, build_summary

__all__ = ["build_report", "build_summary"]
