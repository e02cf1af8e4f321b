"""Commands that run or talk to services: the hub, a node, a researcher's query."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from accord import protocol
from accord.errors import ConfigError, NetworkError

console = Console()
err = Console(stderr=True)

hub_app = typer.Typer(help="Run and administer the hub.", no_args_is_help=True)
node_app = typer.Typer(help="Run a member's node.", no_args_is_help=True)


class Disclosure(StrEnum):
    """How a query's results are disclosed, as the command line spells it."""

    PER_MEMBER = "per-member"
    SECURE_SUM = "secure-sum"

    @property
    def protocol_value(self) -> str:
        return protocol.SECURE_SUM if self is Disclosure.SECURE_SUM else protocol.PER_MEMBER


@hub_app.command("init")
def hub_init(directory: Annotated[Path, typer.Argument(help="new hub directory")]) -> None:
    """Create a hub: keys, a migrated registry database and an audit log."""
    from accord.hub.layout import HubLayout

    identity = HubLayout(directory).initialise()
    console.print(f"hub created in {directory} (key {identity.public.fingerprint()})")


@hub_app.command("register")
def hub_register(
    directory: Annotated[Path, typer.Argument(help="hub directory")],
    public_key: Annotated[Path, typer.Argument(help="the member's or researcher's .pub file")],
    role: Annotated[str, typer.Option(help="node or researcher")] = "node",
    kind: Annotated[
        str | None, typer.Option(help="hospital, clinic, insurer, trial-site or public-health")
    ] = None,
    display_name: Annotated[str | None, typer.Option("--name")] = None,
) -> None:
    """Add a node's or researcher's public keys to the member registry."""
    from accord.hub.layout import HubLayout
    from accord.hub.store import HubStore
    from accord.trust.keys import load_public

    layout = HubLayout(directory)
    layout.require_initialised()
    public = load_public(public_key)
    HubStore.open_path(layout.database).register(
        public, role=role, kind=kind, display_name=display_name
    )
    console.print(f"registered {role} {public.name} ({public.fingerprint()})")


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise NetworkError(
                f"cannot listen on {host}:{port}: {error.strerror or error}",
                hint="choose another port with --port, or stop whatever holds it",
            ) from None


@hub_app.command("serve")
def hub_serve(
    directory: Annotated[Path, typer.Argument(help="hub directory")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8700,
    cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) to serve HTTPS")] = None,
    cert_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
) -> None:
    """Serve the hub's API and the nodes' WebSocket endpoint."""
    import uvicorn

    from accord.hub.app import create_app

    if (cert is None) != (cert_key is None):
        raise ConfigError("--cert and --cert-key go together", hint="give both or neither")
    for path in (cert, cert_key):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file {path} does not exist", hint="give a PEM file")
    ensure_port_free(host, port)
    app = create_app(directory)
    scheme = "https" if cert else "http"
    err.print(f"hub serving on {scheme}://{host}:{port}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(cert_key) if cert_key else None,
        log_level="warning",
        ws_ping_interval=20,
        timeout_graceful_shutdown=3,  # long-polls must not hold a restart for 30 s
    )


@node_app.command("init")
def node_init(
    directory: Annotated[Path, typer.Argument(help="new node directory")],
    member: Annotated[str, typer.Option(help="member id, e.g. northgate-hospital")],
    hub_url: Annotated[str, typer.Option(help="the hub's URL, https://...")],
    hub_public_key: Annotated[Path, typer.Option("--hub-pub", help="the hub's .pub file")],
    database: Annotated[Path, typer.Option("--db", help="the member's CDM DuckDB file")],
) -> None:
    """Create a node directory: this member's keys and a node.json to edit."""
    from pydantic import ValidationError

    from accord.node.config import DatabaseConfig, NodeConfig, describe, write_node_config
    from accord.trust.keys import generate_identity, load_public, write_identity

    load_public(hub_public_key)  # fail now, not at the first connection
    config_path = directory / "node.json"
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists", hint="use another directory")
    try:
        config = NodeConfig(
            member=member,
            hub_url=hub_url,
            hub_public_key=hub_public_key.resolve(),
            key=Path(f"{member}.key"),
            database=DatabaseConfig(engine="duckdb", path=str(database.resolve())),
        )
    except ValidationError as error:
        raise ConfigError(f"invalid node settings: {describe(error)}") from None
    directory.mkdir(parents=True, exist_ok=True)
    write_identity(generate_identity(member), directory)
    write_node_config(config_path, config)
    console.print(f"wrote {config_path}; register {directory / (member + '.pub')} at the hub")


@node_app.command("run")
def node_run(
    config: Annotated[Path, typer.Option("--config", help="node.json of this member")],
) -> None:
    """Connect out to the hub and answer its tasks until stopped (Ctrl-C or SIGTERM)."""
    from accord.node.agent import NodeAgent
    from accord.node.config import load_node_config

    agent = NodeAgent(load_node_config(config), say=lambda line: err.print(line, highlight=False))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    try:
        asyncio.run(main())
    finally:
        agent.close()
    err.print("node stopped")


def query(
    file: Annotated[
        Path,
        typer.Argument(help="analysis as JSON (accord query model), or an ATLAS cohort definition"),
    ],
    hub: Annotated[str, typer.Option(help="hub URL")] = "http://127.0.0.1:8700",
    key: Annotated[Path, typer.Option(help="researcher's .key file")] = Path("researcher.key"),
    members: Annotated[str | None, typer.Option(help="comma-separated member ids")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="the date an ATLAS cohort is counted at, YYYY-MM-DD (default: today)"
        ),
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="also write the result's frame to this CSV file")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for every member")] = 120.0,
    tls_ca: Annotated[
        Path | None, typer.Option(help="PEM certificates to trust for the hub")
    ] = None,
    disclosure: Annotated[
        Disclosure,
        typer.Option(
            help="per-member: each member releases its own figure; secure-sum: members "
            "mask their sums so the hub learns only the total (3 members or more)"
        ),
    ] = Disclosure.PER_MEMBER,
) -> None:
    """Send an analysis to the consortium and print each member's disclosed result and the
    consortium's. An ATLAS (Circe) cohort definition is imported and counted."""
    from accord.cli.render import (
        coefficient_table,
        frame_table,
        result_table,
        run_with_progress,
        secure_table,
    )
    from accord.client import Client
    from accord.query import GlmStep, query_from_json
    from accord.query.atlas import cohort_from_atlas

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {file}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file} is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{file} is not valid JSON: line {error.lineno}: {error.msg}") from None
    except RecursionError:
        raise ConfigError(f"{file} is nested too deeply to be a query") from None
    if isinstance(document, dict) and ("PrimaryCriteria" in document or "expression" in document):
        imported = cohort_from_atlas(document, as_of=_date_option(as_of))
        for note in imported.notes:
            err.print(f"[dim]ATLAS: {note}[/]", highlight=False)
        analysis: Any = imported.count_persons()
    else:
        analysis = query_from_json(document)
    chosen = [m.strip() for m in members.split(",") if m.strip()] if members else None
    with Client.from_key_file(hub, key, tls_ca=tls_ca) as client:
        mode = disclosure.protocol_value
        if isinstance(analysis, GlmStep):
            with err.status("fitting the model, one Newton step per round"):
                fitted = client.fit_glm(analysis, chosen, timeout=timeout, disclosure=mode)
            console.print(coefficient_table(fitted, title=f"Federated {analysis.family} model"))
            return
        result = run_with_progress(client, analysis, chosen, timeout=timeout, disclosure=mode)
    if mode == protocol.SECURE_SUM:
        console.print(secure_table(result))
        if result.analysis != "count_persons" and "withheld" not in result.summary["secure"]:
            console.print(frame_table(result))
    elif result.analysis == "count_persons":
        console.print(result_table(result))
    else:
        console.print(frame_table(result))
    if csv is not None:
        from accord.cli.quality import write_atomically

        write_atomically(csv, result.frame().to_csv(index=result.analysis == "correlation"))
        console.print(f"csv: {csv}")


def _date_option(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--as-of: expected a date as YYYY-MM-DD, got {value!r}") from None


@hub_app.command("quality")
def hub_quality(
    hub: Annotated[str, typer.Option(help="hub URL")] = "http://127.0.0.1:8700",
    key: Annotated[Path, typer.Option(help="researcher's .key file")] = Path("researcher.key"),
    html: Annotated[
        Path | None, typer.Option(help="also write the consortium's quality table as HTML")
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="PEM certificates to trust for the hub")
    ] = None,
) -> None:
    """The consortium's quality table: each member's latest decision and failing checks."""
    from accord.cli.quality import write_atomically
    from accord.cli.render import quality_table
    from accord.client import Client

    with Client.from_key_file(hub, key, tls_ca=tls_ca) as client:
        members = client.quality()
    console.print(quality_table(members))
    if html is not None:
        from accord.quality.html import render_consortium_table

        write_atomically(html, render_consortium_table(members))
        console.print(f"html: {html}")


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
    app.add_typer(node_app, name="node")
    app.command()(query)
