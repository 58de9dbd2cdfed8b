"""The dashboard's top layer: Streamlit widgets and cached loaders that the pages share.

Layers, bottom to top: :mod:`~fusionlab.dashboard.errors` and :mod:`~fusionlab.dashboard.examples` (no
Streamlit, no model); the Streamlit-free logic (:mod:`~fusionlab.dashboard.inference`, ``train_view``,
``runs_view``, ``workspace_view``, ``mechanics``, ``efficiency``, the chart builders), unit-tested without a
browser; and this module with :mod:`~fusionlab.dashboard.urlstate`, which touch ``st``. Pages import from
the dashboard only.
"""

from __future__ import annotations

import sqlite3

import streamlit as st

from fusionlab.dashboard import urlstate
from fusionlab.dashboard.efficiency import DEFAULT_REPEATS, LatencyReport, measure_latency
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.inference import Predictor, checkpoint_signature, preferred_fusion
from fusionlab.dashboard.settings import DATA_KEY, HOME_KEY, Settings, resolve_settings
from fusionlab.pack.store import PackError
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace


def session_settings() -> Settings:
    """This session's settings (sidebar values if set, else the environment's), or a :class:`DashboardError`
    when the workspace cannot be created there."""
    try:
        return resolve_settings(st.session_state.get(HOME_KEY), st.session_state.get(DATA_KEY))
    except OSError as err:
        raise DashboardError(
            f"The workspace cannot be used: {err}. Choose another workspace directory in the sidebar."
        ) from err
    except PackError as err:
        raise DashboardError(f"The pretrained pack could not be installed into the workspace: {err}") from err


def settings_or_stop() -> Settings:
    """:func:`session_settings`, or the page stops with the readable reason: every page's first line."""
    try:
        return session_settings()
    except DashboardError as err:
        st.error(str(err))
        st.stop()
        raise  # st.stop() raises; this only tells type checkers so


def open_run_store(workspace: Workspace) -> RunStore:
    """The workspace's run store, or the page stops saying why the database cannot be opened."""
    try:
        return RunStore(workspace.runs_db)
    except sqlite3.Error as err:
        st.error(f"The run database of this workspace cannot be opened: {err}")
        st.stop()
        raise  # st.stop() raises; this only tells type checkers so


@st.cache_resource(max_entries=4, show_spinner="Loading the fusion and its adapters…")
def _cached_predictor(root: str, fusion: str, signature: tuple[tuple[str, int], ...]) -> Predictor:
    return Predictor(Workspace(root), fusion)


def load_predictor(workspace: Workspace, fusion: str) -> Predictor:
    """The server-wide :class:`Predictor` of ``fusion``, reloaded when its checkpoints change on disk.

    Errors are not cached (Streamlit never caches an exception), so fixing the workspace fixes the page.
    """
    return _cached_predictor(str(workspace.root), fusion, checkpoint_signature(workspace, fusion))


def choose_fusion() -> tuple[Workspace, str, Predictor]:
    """The fusion picker shared by the Playground and Efficiency pages: workspace, chosen fusion, its predictor.

    Stops the page with a readable message when the workspace cannot be read, holds no fusion yet, or the chosen
    fusion cannot be loaded.
    """
    workspace = settings_or_stop().workspace
    fusions = workspace.list_fusions()
    if not fusions:
        st.info("This workspace has no fusion yet: prepare the demo on the Home page, or train one on the Train page.")
        st.stop()
    urlstate.set_default(urlstate.FUSION, preferred_fusion(workspace, fusions))
    fusion = st.selectbox("Fusion", fusions, **urlstate.bound(urlstate.FUSION))
    try:
        predictor = load_predictor(workspace, fusion)
    except DashboardError as err:
        st.error(str(err))
        st.stop()
    return workspace, fusion, predictor


@st.cache_data(max_entries=16, show_spinner="Timing the encoder, one adapter and fusion…")
def _cached_latency(root: str, fusion: str, signature: tuple[tuple[str, int], ...], repeats: int) -> LatencyReport:
    return measure_latency(load_predictor(Workspace(root), fusion), repeats)


def cached_latency(workspace: Workspace, fusion: str, repeats: int = DEFAULT_REPEATS) -> LatencyReport:
    """:func:`~fusionlab.dashboard.efficiency.measure_latency`, remembered per fusion and checkpoint version
    (a measurement takes seconds)."""
    return _cached_latency(str(workspace.root), fusion, checkpoint_signature(workspace, fusion), repeats)
