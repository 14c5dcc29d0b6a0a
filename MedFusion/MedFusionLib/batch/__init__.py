"""Cohort fusion on Dask distributed (``medfusion batch``): one task per case, resumable, failures isolated.

    from MedFusionLib.batch import CaseSpec, run_batch
    report = run_batch("cohort.csv", "out/", CaseSpec(id="", method="laplacian"), workers=2)
    report.failed, report.summary      # failed CaseRecords, out/summary.csv

Modules: cohort (the CSV), manifest (recorded settings, resume), staging (verified atomic outputs),
case (the task a worker runs), summary (summary.csv), runner (the Dask client), cli (the subcommand).
Imported lazily, so that building the ``medfusion`` parser does not load them.
"""
_LAZY = {"CaseSpec": "cohort", "read_cohort": "cohort", "BatchReport": "runner", "run_batch": "runner",
         "CaseRecord": "summary"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'MedFusionLib.batch' has no attribute {name!r}")


__all__ = list(_LAZY)
