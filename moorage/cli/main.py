"""The ``moorage`` command: the server, and a client for the native API."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from moorage.cli import client_commands

app = typer.Typer(help="Moorage: self-hosted SageMaker-style model hosting.", no_args_is_help=True)
client_commands.register(app)


@app.callback()
def options(credentials_file: Optional[Path] = typer.Option(
        None, envvar="AWS_SHARED_CREDENTIALS_FILE",
        help="Credentials file with a 'moorage' profile (default: the one in the default data dir).")) -> None:
    client_commands.CREDENTIALS_FILE[0] = credentials_file


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8080, help="Port for the API, the AWS protocols and invocations."),
    data_dir: Optional[Path] = typer.Option(None, help="Where state, model cache and logs live."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Accept unsigned requests (loopback only)."),
) -> None:
    """Run the Moorage server: control plane and inference router in one process."""
    import uvicorn

    from moorage.api.app import create_app
    from moorage.control.services import build_services
    from moorage.settings import Settings

    overrides: dict[str, object] = {"host": host, "port": port}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if no_auth:
        overrides["auth"] = False
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if not settings.auth and not _is_loopback(settings.host):
        typer.echo(f"moorage: refusing to listen on {settings.host} with authentication off; "
                   "--no-auth is for loopback addresses only.", err=True)
        raise typer.Exit(2)
    services = build_services(settings)
    if settings.auth:
        message = services.keys.bootstrap(settings)
        if message:
            typer.echo(f"moorage: {message}", err=True)
    else:
        typer.secho("moorage: WARNING: authentication is OFF (--no-auth): any local process can "
                    "call this server. Use it only for local experiments.", err=True, fg="red", bold=True)
    typer.echo(f"moorage: serving on http://{settings.host}:{settings.port} "
               f"(data in {settings.data_dir})", err=True)
    uvicorn.run(create_app(services), host=settings.host, port=settings.port, loop="uvloop",
                http="httptools", log_level=log_level, access_log=False, lifespan="on",
                timeout_graceful_shutdown=30,
                # Moorage trusts no X-Forwarded-* header (nothing here depends on the client's
                # address), so uvicorn's proxy-headers middleware would be pure per-request cost.
                proxy_headers=False)


def _is_loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main() -> None:
    app()


if __name__ == "__main__":
    main()
