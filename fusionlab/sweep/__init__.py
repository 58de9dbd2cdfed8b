"""Sweeps: every subset of source adapters fused for one target, as a group of ordinary fusion runs.

:mod:`~fusionlab.sweep.spec` plans the runs, :mod:`~fusionlab.sweep.group` queues, follows, cancels and resumes
them as one, :mod:`~fusionlab.sweep.analysis` reads the answer from the finished runs.
"""
