"""The fusionlab dashboard: ``streamlit run app.py``.

This entry point only frames the pages: page config, the sidebar (which workspace, whose session) every page
reads through :func:`fusionlab.dashboard.widgets.session_settings` and ``current_visitor``, and the navigation.
The server's settings come from its own file, environment and flags (``streamlit run app.py -- --classroom``,
see :mod:`fusionlab.dashboard.server_config`); nothing a visitor types is a path. Each page lives in
``app_pages/`` and has its own URL path (``/playground``, ``/efficiency``...), so a copied link opens the same page. The folder is
not called ``pages/`` on purpose: Streamlit would auto-discover a ``pages/`` folder and serve its scripts on
their own, without this frame, when a page's URL is opened directly.
"""

import logging
import sys

import streamlit as st
import torch

from fusionlab.dashboard import widgets
from fusionlab.dashboard.markdown import md

# One thread per inference: the dashboard answers short inputs (a 32-token forward is ~40 ms on one core) while
# the worker may be training on every core; with several threads each, the two processes oversubscribe the CPU
# and a Playground answer slows from tens of milliseconds to seconds (bench/playground_latency.py).
torch.set_num_threads(1)

# The pages' links run along the top and the sidebar (workspace, who you are) starts closed: on a projector at
# 1280×720 or a small laptop the page itself gets the width; the sidebar is one click away. The menu (top right)
# holds this About and the theme choice only: `client.toolbarMode = "minimal"` (.streamlit/config.toml) shows
# nothing else to a visitor.
st.set_page_config(
    page_title="fusionlab",
    layout="wide",
    initial_sidebar_state="collapsed",
    menu_items={"About": "**fusionlab**: adapter fusion on transformer encoders, seen from inside."},
)

# Less empty space above each page's title (Streamlit leaves room for a header the top navigation already fills):
# on a projector at 1280×720 that space is what keeps the Playground's answers above the fold.
# Columns that must not get too narrow stack instead (an 800-px window): the Playground's two answer cards (12rem
# each, or their titles are cut) and the Compare page's two scatter charts (26rem each, or the legend fills them).
# A metric's value (the Playground's answer) wraps where Streamlit would cut it off, at word boundaries only
# (labels wrap at their underscores: markdown.breakable), never inside a word ("contradictio / n"): its size
# follows the window so the longest label of a task fits a card.
WRAPPING = {"verdicts": "12rem", "compare_charts": "26rem"}
ANSWER = "[data-testid='stMetricValue']"
st.html(
    "<style>[data-testid='stMainBlockContainer'] { padding-top: 3.5rem; }"
    f"{ANSWER}, {ANSWER} * {{ white-space: normal !important; overflow-wrap: break-word; word-break: normal; "
    "text-overflow: clip; line-height: 1.2; }"
    f"{ANSWER} {{ font-size: clamp(1.3rem, 1.9vw, 2.25rem) !important; }}"
    + "".join(
        f".st-key-{key} [data-testid='stHorizontalBlock'] {{ flex-wrap: wrap; }}"
        f".st-key-{key} [data-testid='stColumn'] {{ min-width: {width}; }}"
        for key, width in WRAPPING.items()
    )
    + "</style>"
)

# The server's own settings (file, environment, flags after `--`); visitors choose among what exists, never a path.
widgets.set_server_argv(sys.argv[1:])
config = widgets.server_config()

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", url_path="index", default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("app_pages/playground.py", title="Playground", icon=":material/science:", url_path="playground"),
    st.Page("app_pages/efficiency.py", title="Efficiency", icon=":material/speed:", url_path="efficiency"),
    st.Page("app_pages/compare.py", title="Compare methods", icon=":material/compare:", url_path="compare"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
    st.Page("app_pages/mechanics.py", title="Mechanics", icon=":material/tune:", url_path="mechanics"),
    # The default page is served at "/" (its url_path only names it), so "/home", a natural link to type or
    # share, would say "Page not found": the same page, hidden from the menu, answers there too.
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", url_path="home", visibility="hidden"),
]
page = st.navigation(pages, position="top")
widgets.keep_theme_across_pages([p.url_path for p in pages if p.url_path])

widgets.workspace_sidebar(config)
widgets.visitor_sidebar(config)

try:
    page.run()
except Exception as err:  # st.stop()/st.rerun() are BaseExceptions and pass through
    # A bug must not greet the user with a traceback: say what failed, keep the details for the server log.
    logging.getLogger("fusionlab.dashboard").exception("the %s page failed", page.title)
    st.error(f"The {page.title} page failed: {type(err).__name__}: {md(err)}. The details are in the server log.")
