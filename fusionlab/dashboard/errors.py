"""The dashboard's one error type: the bottom layer, imported by the logic modules and the widgets alike."""

from __future__ import annotations


class DashboardError(Exception):
    """Something the user can fix; its message is shown on the page as it is (never a traceback)."""
