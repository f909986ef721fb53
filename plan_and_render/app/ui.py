"""``plan-and-render ui``: the web UI on a local port (registered on the main command).

    plan-and-render ui --planner rules --model models/shapes-tiny --steps 10
    # open http://127.0.0.1:7860

The server itself is ``web`` (FastAPI); it is imported when the command runs, not when the CLI starts,
because FastAPI and uvicorn add about a second to every ``plan-and-render`` call that does not need them.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional

import click

from ..errors import UsageError
from . import api
from .chat_cli import store_option
from .options import backend_options, planner_options
from .store import default_path
from .terminal import info_line, quiet_libraries


def _check_port(host: str, port: int) -> None:
    """A port already taken is one line here, not uvicorn's log and exit."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another with --port") \
            from None


@click.command("ui", help="Start the web UI: plan, drag the layout, render and edit by chat in the browser.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every "
              "interface; the UI has no login, so only on a trusted network).")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True, help="Port to listen on.")
@planner_options
@click.option("--model", "-m", default=api.DEFAULT_MODEL, show_default=True, help="Diffusion weights every render "
              "uses (hub id, folder, file). Offline demo: models/shapes-tiny.")
@click.option("--steps", type=click.IntRange(1, 1000), help="Default sampling steps in the page's render form "
              "(else the model's).")
@store_option
@click.pass_context
def ui_cmd(ctx: click.Context, host: str, port: int, planner: str, base_url, retries, timeout, planner_device,
           model: str, steps: Optional[int], store: Optional[Path]) -> None:
    import uvicorn

    from .web import UIConfig, create_app

    quiet_libraries(rendering=True)
    given = ctx.get_parameter_source("planner") is not click.core.ParameterSource.DEFAULT
    path = Path(store).expanduser() if store else default_path()
    if path.is_dir():
        raise UsageError(f"--store {str(path)!r} is a folder; give a database file path")
    config = UIConfig(store=path, model=model, planner=planner if given else None, steps=steps,
                      planner_options=backend_options(base_url, retries, timeout, planner_device))
    app = create_app(config)
    _check_port(host, port)
    info_line(f"plan-and-render ui on http://{host}:{port}  (model {model}, planner {planner}, store {path}); "
              "Ctrl-C stops it")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(group: click.Group) -> None:
    """Add ``ui`` to the main command."""
    group.add_command(ui_cmd)
