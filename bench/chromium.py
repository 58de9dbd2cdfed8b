"""How the benchmarks and the browser tests start Debian's chromium (``playwright install`` cannot download
browsers here): one list of flags for both."""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
