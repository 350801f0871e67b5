"""`warden`: the command line. Heavy imports happen inside commands so `--help` stays instant."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from proxy.settings import ConfigError, WardenSettings, load_settings, settings_for_upstreams
from proxy.telemetry.settings import TelemetrySettings
from proxy.tracing.logs import LogFormat, configure

log = logging.getLogger("warden")

EXAMPLES = """\
examples:
  warden serve --upstream http://127.0.0.1:8000 --port 8080
      drop-in proxy; point the OpenAI client at http://127.0.0.1:8080/v1
  warden serve --config warden.yaml
  warden check-config warden.yaml
  warden up
      the embedded defaults: a local llama.cpp server with a tiny model, and the proxy in front
  warden keys create --tenant acme --config warden.yaml
  warden migrate --config warden.yaml
  warden query "SELECT model, count() FROM requests GROUP BY model" --format json
  warden spend --by tenant --since 7d
"""


def _setup_logging(level: str, fmt: LogFormat = "text") -> None:
    configure(level, fmt)


def version_text() -> str:
    """The installed package's version, and `git describe` when run from a checkout (a build names its commit)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f"warden {version('llm-warden')}"
    except PackageNotFoundError:
        text = "warden (not installed)"
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            described = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                                       capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            described = ""
        if described:
            text += f" (git {described})"
    return text


class _Version(argparse.Action):
    """Like argparse's `version` action, but `git describe` runs only when asked, not on every command."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


def _serve_settings(args: argparse.Namespace) -> WardenSettings:
    if args.config and args.upstream:
        raise ConfigError(["give either --config FILE or --upstream URL, not both"])
    if args.config:
        settings = load_settings(Path(args.config))
        if args.port is not None or args.host is not None:
            listen = settings.listen.model_copy(
                update={k: v for k, v in (("port", args.port), ("host", args.host)) if v is not None}
            )
            settings = settings.model_copy(update={"listen": listen})
        return settings
    if args.upstream:
        return settings_for_upstreams(args.upstream, port=8080 if args.port is None else args.port,
                                      host=args.host or "127.0.0.1")
    raise ConfigError(["nothing to proxy: give --upstream URL (repeatable) or --config FILE"])


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.server import run

    settings = _serve_settings(args)
    if args.log_format:  # into the settings: workers and the telemetry process log in it too
        settings = settings.model_copy(update={"server": settings.server.model_copy(
            update={"log_format": args.log_format})})
    _setup_logging(args.log_level, settings.server.log_format)
    workers = _workers(args.workers, settings)
    if workers is not None and args.reuse_port:
        raise ConfigError(["--reuse-port is for several separate Wardens; --workers shares one socket itself"])
    run(settings, reuse_port=args.reuse_port, config_path=Path(args.config) if args.config else None,
        workers=workers, log_level=args.log_level)
    return 0


def _workers(flag: str | None, settings: WardenSettings) -> int | None:
    """--workers N|auto, else `server.workers`; None: one process, no supervisor (the in-process writer)."""
    from proxy.control.supervisor import worker_count

    value = flag if flag is not None else settings.server.workers
    return None if value is None else worker_count(value)


def cmd_worker(args: argparse.Namespace) -> int:
    from proxy.server import run_worker

    run_worker(Path(args.spec), args.index, args.listen_fd, args.log_level)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(Path(args.file))
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    backends = sum(len(g.backends) for g in settings.upstreams)
    print(f"{args.file}: OK ({len(settings.upstreams)} upstream group(s), {backends} backend(s), "
          f"listening on {settings.listen.host}:{settings.listen.port})")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from proxy.control.supervisor import worker_count
    from proxy.embedded import run_embedded

    workers = worker_count(args.workers) if args.workers is not None else None
    return run_embedded(port=args.port, host=args.host, state_dir=Path(args.state_dir), workers=workers,
                        log_level=args.log_level)


def _telemetry_settings(args: argparse.Namespace) -> TelemetrySettings:
    settings = load_settings(Path(args.config)).telemetry if args.config else TelemetrySettings()
    return settings.model_copy(update={"dsn": args.dsn}) if args.dsn else settings


def cmd_migrate(args: argparse.Namespace) -> int:
    import asyncio

    from proxy.telemetry import StoreError
    from proxy.telemetry.commands import migrate_command

    try:
        return asyncio.run(migrate_command(_telemetry_settings(args), dry_run=args.dry_run))
    except (StoreError, ValueError) as exc:
        print(f"warden: {exc}", file=sys.stderr)
        return 1


def cmd_query(args: argparse.Namespace) -> int:
    import asyncio

    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    from proxy.telemetry import StoreError
    from proxy.telemetry.commands import query_command

    try:
        return asyncio.run(query_command(_telemetry_settings(args), args.sql, fmt=args.format))
    except (StoreError, ClickHouseError) as exc:
        print(f"warden: {exc}", file=sys.stderr)
        return 1


def cmd_spend(args: argparse.Namespace) -> int:
    import asyncio

    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    from proxy.telemetry import StoreError
    from proxy.telemetry.commands import query_command
    from proxy.telemetry.spend import parse_since, spend_sql

    try:
        sql = spend_sql(args.by, parse_since(args.since))
        return asyncio.run(query_command(_telemetry_settings(args), sql, fmt=args.format))
    except (StoreError, ClickHouseError, ValueError) as exc:
        print(f"warden: {exc}", file=sys.stderr)
        return 1


def cmd_local_model(args: argparse.Namespace) -> int:
    from proxy.localmodel import main as localmodel_main

    localmodel_main(args.rest, prog="warden local-model")
    return 0


def cmd_scanner(args: argparse.Namespace) -> int:
    from detectors.runtime.process import main as scanner_main

    return scanner_main(args.rest, prog="warden scanner")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warden",
        description="Warden: an LLM governance and observability proxy for OpenAI-compatible model servers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the proxy", description="Run the proxy in front of model servers.")
    serve.add_argument("--config", metavar="FILE", help="YAML config file (see docs/configuration.md)")
    serve.add_argument("--upstream", metavar="URL", action="append",
                       help="an OpenAI-compatible server root, e.g. http://127.0.0.1:8000 (repeatable)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080, or the config's)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1, or the config's)")
    serve.add_argument("--reuse-port", action="store_true",
                       help="bind with SO_REUSEPORT so several warden processes can share the port")
    serve.add_argument("--workers", metavar="N|auto",
                       help="a supervisor with N proxy workers on one port, a telemetry process and the scanner "
                            "(auto: one per usable core); default: the config's server.workers, else one process")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="log lines as text or one JSON object each (default: the config's server.log_format)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)  # started by `serve --workers`, never by hand
    worker.add_argument("--spec", required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--listen-fd", type=int, required=True)
    worker.set_defaults(func=cmd_worker)

    check = sub.add_parser("check-config", help="validate a config file and list every problem")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)

    up = sub.add_parser("up", help="run the embedded defaults: a local model server and the proxy")
    up.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--state-dir", default=".warden", help="where models and data live (default .warden)")
    up.add_argument("--workers", metavar="N|auto", help="as for serve: N proxy workers under a supervisor")
    up.set_defaults(func=cmd_up)

    scanner = sub.add_parser("scanner", help="run the scanner process (models, GPU, micro-batching) on its own",
                             add_help=False)
    scanner.add_argument("rest", nargs=argparse.REMAINDER)
    scanner.set_defaults(func=cmd_scanner)

    store_help = "the telemetry store; default: the config's telemetry.dsn, else chdb://.warden/clickhouse"
    migrate = sub.add_parser("migrate", help="create or upgrade the telemetry tables (ClickHouse or chDB)")
    migrate.add_argument("--config", metavar="FILE", help="YAML config file; its telemetry section is used")
    migrate.add_argument("--dsn", help=store_help)
    migrate.add_argument("--dry-run", action="store_true", help="print the SQL instead of running it")
    migrate.set_defaults(func=cmd_migrate)

    query = sub.add_parser("query", help="run SQL on the telemetry store (while serve --workers runs: read-only, "
                                                 "through its telemetry process)")
    query.add_argument("sql", metavar="SQL")
    query.add_argument("--config", metavar="FILE", help="YAML config file; its telemetry section is used")
    query.add_argument("--dsn", help=store_help)
    query.add_argument("--format", choices=["table", "json"], default="table")
    query.set_defaults(func=cmd_query)

    spend = sub.add_parser("spend", help="what was spent, by tenant, key, end user or model (pricing:)")
    spend.add_argument("--by", choices=["tenant", "key", "user", "model"], default="tenant")
    spend.add_argument("--since", default="7d", help="how far back: 30m, 24h, 7d, 2w (default 7d)")
    spend.add_argument("--config", metavar="FILE", help="YAML config file; its telemetry section is used")
    spend.add_argument("--dsn", help=store_help)
    spend.add_argument("--format", choices=["table", "json"], default="table")
    spend.set_defaults(func=cmd_spend)

    from proxy.control.keys_cli import add_keys_parser

    add_keys_parser(sub)

    local = sub.add_parser("local-model", help="serve a GGUF model with llama.cpp (a tiny one by default)",
                           add_help=False)
    local.add_argument("rest", nargs=argparse.REMAINDER)
    local.set_defaults(func=cmd_local_model)
    return parser


def _passthrough(command: str, rest: list[str]) -> int:
    """Commands that own their whole argument list (argparse's REMAINDER cannot take a leading --help)."""
    namespace = argparse.Namespace(rest=rest)
    return cmd_scanner(namespace) if command == "scanner" else cmd_local_model(namespace)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("scanner", "local-model"):
        return _passthrough(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"warden: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
