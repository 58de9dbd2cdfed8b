"""The dashboard's top layer: Streamlit widgets and cached loaders that the pages share.

Layers, bottom to top: :mod:`~fusionlab.dashboard.errors` and :mod:`~fusionlab.dashboard.examples` (no
Streamlit, no model); the Streamlit-free logic (:mod:`~fusionlab.dashboard.inference`, ``train_view``,
``runs_view``, ``workspace_view``, ``mechanics``, ``efficiency``, the chart builders), unit-tested without a
browser; and this module with :mod:`~fusionlab.dashboard.urlstate`, which touch ``st``. Pages import from
the dashboard only.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote, unquote

import streamlit as st

from fusionlab.dashboard import urlstate
from fusionlab.dashboard.compare_view import comparisons_signature
from fusionlab.dashboard.composed import AdapterPredictor, ComposedModel, composed_models
from fusionlab.dashboard.dev_browser import DevDrops, DevExample, dev_examples, dev_leave_one_out
from fusionlab.dashboard.efficiency import DEFAULT_REPEATS, LatencyReport, measure_latency
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.inference import Predictor, checkpoint_signature, preferred_fusion
from fusionlab.dashboard.markdown import code, md
from fusionlab.dashboard.server_config import ServerConfig, load_server_config
from fusionlab.dashboard.settings import DATA_KEY, HOME_KEY, WORKSPACE_KEY, Settings, resolve_settings
from fusionlab.dashboard.visitors import (
    Visitor,
    check_visitor_name,
    generated_name,
    new_token,
    sees_server_paths,
    shown_path,
    valid_token,
)
from fusionlab.pack.store import PackError
from fusionlab.runstore import RunStore
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace

_SERVER_ARGV: list[str] = []
VISITOR_COOKIE = "fusionlab_visitor"
NAME_COOKIE = "fusionlab_name"
_TOKEN_KEY, _NAME_KEY, _TEACHER_KEY, _COOKIE_SET_KEY = (
    "fusionlab_visitor_token",
    "fusionlab_visitor_name",
    "fusionlab_teacher",
    "fusionlab_cookie_written",
)


def set_server_argv(argv: list[str]) -> None:
    """The flags ``streamlit run app.py -- …`` was given (app.py passes them once per run)."""
    _SERVER_ARGV[:] = argv


def server_config() -> ServerConfig:
    """The server's settings (file, environment, flags); a broken configuration stops the page saying why."""
    try:
        config = load_server_config(_SERVER_ARGV)
        backend = config.backend_settings()
        if backend.is_ray:  # the dispatcher this server starts (ensure_worker reads the environment) is Ray's
            backend.export(os.environ)
        return config
    except (OSError, ValueError) as err:
        st.error(f"The server's configuration is invalid: {md(err)}")
        st.stop()
        raise


def _chosen_workspace(config: ServerConfig) -> str:
    """The workspace this session works in: the server-side override, else the visitor's choice among the
    offered ones (a value that is not among them is ignored), else the server's home."""
    override = st.session_state.get(HOME_KEY)
    if override:
        return str(override)
    offered = {str(w.root) for w in config.workspaces()}
    chosen = st.session_state.get(WORKSPACE_KEY)
    return chosen if chosen in offered else config.home


def session_settings() -> Settings:
    """This session's workspace and data directory (see :mod:`fusionlab.dashboard.settings`), or a
    :class:`DashboardError` when the workspace cannot be used."""
    config = server_config()
    try:
        return resolve_settings(_chosen_workspace(config), st.session_state.get(DATA_KEY) or config.data_dir)
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
        st.error(md(err))
        st.stop()
        raise  # st.stop() raises; this only tells type checkers so


def open_run_store(workspace: Workspace) -> RunStore:
    """The workspace's run store, or the page stops saying why the database cannot be opened."""
    try:
        return RunStore(workspace.runs_db)
    except sqlite3.Error as err:
        st.error(f"The run database of this workspace cannot be opened: {md(err)}")
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

    It offers the workspace's fusions and those its comparisons trained (``cb-s42/fusion:weighted``); for one of
    those, the workspace returned is the comparison's own (where that fusion and its adapters are). Stops the page
    with a readable message when the workspace cannot be read, holds no fusion yet, or the chosen fusion cannot
    be loaded.
    """
    workspace = settings_or_stop().workspace
    fusions = workspace.list_fusions()
    composed = {m.key: m for m in workspace_composed(workspace) if m.kind == "fusion"}
    options = [*fusions, *composed]
    if not options:
        st.info("This workspace has no fusion yet: prepare the demo on the Home page, or train one on the Train page.")
        st.stop()
    urlstate.set_default(urlstate.FUSION, preferred_fusion(workspace, fusions) if fusions else options[0])
    asked = urlstate.unknown_choice(urlstate.FUSION, options)
    # Shown as their keys: a bound selectbox writes the shown text into the link, and a key reads back.
    choice = st.selectbox(
        "Fusion",
        options,
        help="The workspace's fusions, then those its comparisons trained (<comparison>/<method>).",
        on_change=urlstate.forget_inputs,
        **urlstate.bound(urlstate.FUSION),
    )
    if asked is not None:
        st.warning(
            f"The link asked for fusion {code(asked)}, which this workspace does not have; showing {code(choice)}."
        )
    home, fusion = (composed[choice].workspace, composed[choice].name) if choice in composed else (workspace, choice)
    try:
        predictor = load_predictor(home, fusion)
    except DashboardError as err:
        st.error(md(err))
        st.stop()
    return home, fusion, predictor


def composed_choices(shown: Workspace, fusion: str, task: str) -> dict[str, ComposedModel]:
    """The models the workspace's comparisons trained for ``task``, by key, for the Playground's compare mode
    (the fusion already shown left out)."""
    home = settings_or_stop().workspace
    return {
        m.key: m
        for m in workspace_composed(home)
        if m.target == task and not (m.kind == "fusion" and m.root == shown.root and m.name == fusion)
    }


@st.cache_data(max_entries=16, show_spinner=False)
def _cached_composed(root: str, signature: tuple[tuple[str, int], ...]) -> list[ComposedModel]:
    return composed_models(Workspace(root))


def workspace_composed(workspace: Workspace) -> list[ComposedModel]:
    """:func:`~fusionlab.dashboard.composed.composed_models`, read again only when a comparison.json changes (the
    Playground asks on every rerun)."""
    return _cached_composed(str(workspace.root), comparisons_signature(workspace))


@st.cache_resource(max_entries=4, show_spinner="Loading the merged adapter…")
def _cached_adapter_predictor(model: ComposedModel, mtime: int) -> AdapterPredictor:
    return AdapterPredictor(model)


def load_adapter_predictor(model: ComposedModel) -> AdapterPredictor:
    """The server-wide :class:`AdapterPredictor` of a comparison's adapter, reloaded when its checkpoint changes."""
    marker = model.workspace.adapter_dir(model.name) / CHECKPOINT_MARKER
    return _cached_adapter_predictor(model, marker.stat().st_mtime_ns if marker.is_file() else -1)


@st.cache_data(max_entries=16, show_spinner="Timing the encoder, one adapter and fusion…")
def _cached_latency(
    root: str, fusion: str, signature: tuple[tuple[str, int], ...], repeats: int, tokens: int | None
) -> LatencyReport:
    return measure_latency(load_predictor(Workspace(root), fusion), repeats, tokens=tokens)


def cached_latency(
    workspace: Workspace, fusion: str, repeats: int = DEFAULT_REPEATS, tokens: int | None = None
) -> LatencyReport:
    """:func:`~fusionlab.dashboard.efficiency.measure_latency`, remembered per fusion, checkpoint version, number
    of runs and input length (a measurement takes seconds)."""
    return _cached_latency(str(workspace.root), fusion, checkpoint_signature(workspace, fusion), repeats, tokens)


@st.cache_data(max_entries=8, show_spinner="Scoring the dev examples with the fusion and with its adapter alone…")
def _cached_dev_examples(
    root: str, fusion: str, signature: tuple[tuple[str, int], ...], data_dir: str | None
) -> list[DevExample]:
    return dev_examples(load_predictor(Workspace(root), fusion), data_dir)


def cached_dev_examples(workspace: Workspace, fusion: str, data_dir: str | None) -> list[DevExample]:
    """:func:`~fusionlab.dashboard.dev_browser.dev_examples`, remembered per fusion, checkpoint version and data
    directory (scoring a few hundred examples twice takes seconds; every student then browses the same list)."""
    return _cached_dev_examples(str(workspace.root), fusion, checkpoint_signature(workspace, fusion), data_dir)


@st.cache_data(max_entries=8, show_spinner="Scoring the dev examples without each adapter in turn…")
def _cached_dev_drops(root: str, fusion: str, signature: tuple[tuple[str, int], ...], data_dir: str | None) -> DevDrops:
    return dev_leave_one_out(load_predictor(Workspace(root), fusion), data_dir)


def cached_dev_drops(workspace: Workspace, fusion: str, data_dir: str | None) -> DevDrops:
    """:func:`~fusionlab.dashboard.dev_browser.dev_leave_one_out`, remembered like :func:`cached_dev_examples`."""
    return _cached_dev_drops(str(workspace.root), fusion, checkpoint_signature(workspace, fusion), data_dir)


# -- the browser's theme -----------------------------------------------------------------------------------
_THEME_SYNC = """<script>
(() => {
  // Streamlit keeps the chosen theme under a key named after the page the browser first loaded
  // (stActiveTheme-/playground-v2), so a reload on another page forgets it. Whenever the theme is saved,
  // save it for every page of this app too.
  if (window.__fusionlabThemeSync) return;
  window.__fusionlabThemeSync = true;
  const pages = %s;
  const base = window.location.pathname.replace(/[^/]*$/, "");
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key, value) {
    setItem.call(this, key, value);
    const found = /^stActiveTheme-.*-v(\\d+)$/.exec(key);
    if (found) for (const page of pages) setItem.call(this, `stActiveTheme-${base}${page}-v${found[1]}`, value);
  };
})();
</script>"""


def keep_theme_across_pages(url_paths: list[str]) -> None:
    """Make the theme a visitor chose stick on every page (and across reloads), not only on the first one."""
    st.html(_THEME_SYNC % json.dumps(["", *url_paths]), unsafe_allow_javascript=True)


# -- who is at this browser ------------------------------------------------------------------------------------
def _write_cookie(name: str, value: str) -> None:
    """Remember ``value`` in this browser for a year (the script carries only server-made or checked values)."""
    payload = json.dumps(f"{name}={value}; path=/; max-age=31536000; samesite=strict").replace("<", "\\u003c")
    st.html(f"<script>document.cookie = {payload};</script>", unsafe_allow_javascript=True)


def current_visitor() -> Visitor:
    """This browser's visitor: its token from the cookie (a reload keeps it), else a new one written there."""
    cookies = getattr(st.context, "cookies", {}) or {}
    token = st.session_state.get(_TOKEN_KEY) or valid_token(cookies.get(VISITOR_COOKIE)) or new_token()
    st.session_state[_TOKEN_KEY] = token
    if cookies.get(VISITOR_COOKIE) != token and not st.session_state.get(_COOKIE_SET_KEY):
        _write_cookie(VISITOR_COOKIE, token)
        st.session_state[_COOKIE_SET_KEY] = True
    name = st.session_state.get(_NAME_KEY)
    if name is None:
        try:
            name = check_visitor_name(unquote(cookies.get(NAME_COOKIE) or ""))
        except ValueError:
            name = generated_name(token)
        st.session_state[_NAME_KEY] = name
    return Visitor(token, name, bool(st.session_state.get(_TEACHER_KEY)))


def visitor_sidebar(config: ServerConfig) -> Visitor:
    """The sidebar's "who am I" part on a classroom server: the visitor's name (changeable) and the teacher's
    unlock; returns the visitor."""
    visitor = current_visitor()
    if not config.classroom:
        return visitor
    with st.sidebar.expander(f"You: {md(visitor.name)}" + (" (teacher)" if visitor.teacher else ""), expanded=False):
        typed = st.text_input("Your name", value=visitor.name, max_chars=32, key="visitor_name_input")
        if typed.strip() != visitor.name:
            try:
                name = check_visitor_name(typed)
            except ValueError as err:
                st.error(md(err))
            else:
                st.session_state[_NAME_KEY] = name
                _write_cookie(NAME_COOKIE, quote(name))
                visitor = Visitor(visitor.token, name, visitor.teacher)
        if config.teacher_passphrase and not visitor.teacher:
            passphrase = st.text_input("Teacher's passphrase", type="password", max_chars=200, key="teacher_input")
            if passphrase:
                if config.is_teacher_passphrase(passphrase):
                    st.session_state[_TEACHER_KEY] = True
                    visitor = Visitor(visitor.token, visitor.name, True)
                    st.success("Teacher mode: you may cancel any run and prepare the demo.")
                else:
                    st.error("That is not the teacher's passphrase.")
    return visitor


def workspace_sidebar(config: ServerConfig) -> None:
    """Where this session works: a choice among the workspaces that exist (never a typed path), and the data.
    A student on a classroom server sees their names only (:func:`~fusionlab.dashboard.visitors.shown_path`)."""
    visible = sees_server_paths(current_visitor(), config.classroom)
    offered = [str(w.root) for w in config.workspaces()]
    if st.session_state.get(HOME_KEY):
        st.sidebar.caption(f"Workspace: {code(shown_path(st.session_state[HOME_KEY], visible))}")
    elif len(offered) > 1:
        st.sidebar.selectbox(
            "Workspace",
            offered,
            key=WORKSPACE_KEY,
            format_func=lambda path: Path(path).name or path,
            help="The workspaces on this server; the teacher's server settings decide which exist.",
        )
    else:
        st.sidebar.caption(f"Workspace: {code(shown_path(offered[0], visible))}")
    data = st.session_state.get(DATA_KEY) or config.resolved_data_dir()
    if not visible:
        st.sidebar.caption("Task data: " + ("on the server" if data else "none (the pack needs none)"))
    else:
        st.sidebar.caption(f"Task data: {code(data) if data else 'none (the pack needs none)'}")
