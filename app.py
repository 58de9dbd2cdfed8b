"""The fusionlab dashboard: ``streamlit run app.py``.

This entry point only frames the pages: page config, the sidebar settings every page reads through
:func:`fusionlab.dashboard.widgets.session_settings`, and the navigation. Each page lives in ``app_pages/`` and
has its own URL path (``/playground``, ``/efficiency``...), so a copied link opens the same page. The folder is
not called ``pages/`` on purpose: Streamlit would auto-discover a ``pages/`` folder and serve its scripts on
their own, without this frame, when a page's URL is opened directly.
"""

import logging

import streamlit as st
import torch

from fusionlab.dashboard.settings import DATA_KEY, HOME_KEY, default_data_dir, default_home

# One thread per inference: the dashboard answers short inputs (a 32-token forward is ~40 ms on one core) while
# the worker may be training on every core; with several threads each, the two processes oversubscribe the CPU
# and a Playground answer slows from tens of milliseconds to seconds (bench/playground_latency.py).
torch.set_num_threads(1)

st.set_page_config(page_title="fusionlab", layout="wide")

# Defaults from the environment, as for the CLI; set before the widgets so the widgets own the values after.
if HOME_KEY not in st.session_state:
    st.session_state[HOME_KEY] = default_home()
if DATA_KEY not in st.session_state:
    st.session_state[DATA_KEY] = default_data_dir()

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("app_pages/playground.py", title="Playground", icon=":material/science:", url_path="playground"),
    st.Page("app_pages/efficiency.py", title="Efficiency", icon=":material/speed:", url_path="efficiency"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
    st.Page("app_pages/mechanics.py", title="Mechanics", icon=":material/tune:", url_path="mechanics"),
]
page = st.navigation(pages)

with st.sidebar:
    st.text_input(
        "Workspace directory",
        key=HOME_KEY,
        help="Where adapters, fusions and the run history live (default: $FUSIONLAB_HOME). Created if missing.",
    )
    st.text_input(
        "Data directory",
        key=DATA_KEY,
        help="Task data as <task>/<split>.jsonl (default: $FUSIONLAB_DATA_DIR, else ../shared/data).",
    )

try:
    page.run()
except Exception as err:  # st.stop()/st.rerun() are BaseExceptions and pass through
    # A bug must not greet the user with a traceback: say what failed, keep the details for the server log.
    logging.getLogger("fusionlab.dashboard").exception("the %s page failed", page.title)
    st.error(f"The {page.title} page failed: {type(err).__name__}: {err}. The details are in the server log.")
