"""ServerApp: the merge server. Thin: the workflow is in :mod:`silorec.apps.server`."""

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from silorec.apps.server import run_merge_server

APP_DIR = Path(__file__).resolve().parents[1]

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Collect fine-tuned domain models, merge them, evaluate on every domain."""
    run_merge_server(grid, context, APP_DIR)
