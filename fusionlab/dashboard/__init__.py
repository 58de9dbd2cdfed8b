"""Logic behind the Streamlit dashboard, importable and tested without a browser; the pages stay thin."""
