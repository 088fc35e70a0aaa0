"""The `adpipeline` command: demo, dev, sandbox, warehouse, tokens, alerts, doctor, check."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path

from adpipeline import clock

log = logging.getLogger("adpipeline")


def _setup_logging(verbose: bool) -> None:
    from adpipeline.http.redact import install_log_redaction

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    install_log_redaction()
    for noisy in ("alembic", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- warehouse ------------------------------------------------------------------------------------

def cmd_warehouse(args: argparse.Namespace) -> int:
    from adpipeline.warehouse import db
    from adpipeline.warehouse.embedded import default_server, warehouse_url

    if args.action == "url":
        url = warehouse_url()
        db.migrate(url)
        print(url)
    elif args.action == "env":
        url = warehouse_url()
        db.migrate(url)
        for name, value in warehouse_shell_environment(url).items():
            print(f"export {name}={shlex.quote(value)}")
    elif args.action == "migrate":
        applied = db.migrate(warehouse_url())
        print("applied: " + (", ".join(applied) or "nothing (up to date)"))
    elif args.action == "stop":
        print("embedded warehouse stopped" if default_server().stop() else "embedded warehouse was not running")
    return 0


def warehouse_shell_environment(url: str) -> dict[str, str]:
    """What plain dbt needs to reach the warehouse: dbt_project/profiles.yml reads these variables (the
    password only from DBT_ENV_SECRET_*, which dbt scrubs from its logs), DBT_PROFILES_DIR finds it."""
    from adpipeline.transform.project import DBT_PROJECT_DIR
    from adpipeline.transform.resources import dbt_environment
    from adpipeline.warehouse.embedded import WAREHOUSE_URL_ENV

    return {WAREHOUSE_URL_ENV: url, **dbt_environment(url), "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)}


# -- tokens ---------------------------------------------------------------------------------------

def token_rows(now: datetime | None = None) -> list[dict]:
    """One row per stored token with its health per the thresholds table; never a secret."""
    from adpipeline.monitoring.thresholds import token_health
    from adpipeline.warehouse import db
    from adpipeline.warehouse.embedded import warehouse_url
    from adpipeline.warehouse.tokens import token_states

    now = now or clock.now()
    url = warehouse_url()
    db.migrate(url)
    with db.connect(url) as conn:
        tokens = token_states(conn)
    rows = []
    for token in tokens:
        health, reason = token_health(
            platform=token.platform, status=token.status, expires_at=token.expires_at,
            data_access_expires_at=token.data_access_expires_at, never_expires=token.never_expires, now=now,
        )
        rows.append({
            "platform": token.platform,
            "scope": token.scope,
            "api": token.api or "(unknown)",  # a token is only ever sent to this API
            "health": health.value,
            "detail": reason,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "data_access_expires_at": token.data_access_expires_at.isoformat() if token.data_access_expires_at else None,
            "last_refreshed_at": token.last_refreshed_at.isoformat() if token.last_refreshed_at else None,
            "refresh_count": token.refresh_count,
            "generation_count": token.generation_count,
            "last_error": token.last_error,
        })
    return rows


def cmd_tokens(args: argparse.Namespace) -> int:
    if args.action == "exchange":
        return cmd_tokens_exchange(args)
    if args.action != "status":
        raise SystemExit(f"unknown tokens action {args.action!r}")
    rows = token_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no tokens stored yet (they are stored on first use by each source)")
    else:
        print(_table(rows, ["platform", "scope", "api", "health", "expires_at", "detail"]))
    worst = {r["health"] for r in rows}
    return 2 if "EXPIRED" in worst else 1 if worst & {"WARNING", "EXPIRING_SOON"} else 0


def cmd_tokens_exchange(args: argparse.Namespace) -> int:
    """Manual recovery: exchange a short-lived token for a long-lived one, store it, verify it. Never prints it."""
    from adpipeline.config import get_config
    from adpipeline.http import ApiError
    from adpipeline.http.redact import register_secret
    from adpipeline.sources.meta.auth import MetaAuth, exchange_and_store, missing_scopes
    from adpipeline.sources.meta.resources import MetaResource
    from adpipeline.warehouse import db
    from adpipeline.warehouse.embedded import warehouse_url
    from adpipeline.warehouse.tokens import TokenStore

    if args.platform is None:
        raise SystemExit("usage: adpipeline tokens exchange meta <short-lived token | ->")
    if args.platform != "meta":
        raise SystemExit(f"tokens exchange: only 'meta' is supported (got {args.platform!r})")
    raw = args.token if args.token not in (None, "-") else sys.stdin.readline()
    short_lived = (raw or "").strip()
    if not short_lived:
        print("adpipeline: no token given (pass it as an argument or on stdin with `-`)", file=sys.stderr)
        return 2
    register_secret(short_lived)
    meta = get_config().meta
    app_id, app_secret = os.environ.get(meta.app_id_env), os.environ.get(meta.app_secret_env)
    if not (app_id and app_secret):
        print(f"adpipeline: set {meta.app_id_env} and {meta.app_secret_env} to exchange a Meta token", file=sys.stderr)
        return 2
    resource = MetaResource(api_version=meta.api_version, access_token_env=meta.access_token_env)
    url = warehouse_url()
    db.migrate(url)
    try:
        token = exchange_and_store(TokenStore(url), MetaAuth(resource.base_url(), app_id, app_secret),
                                   short_lived, clock.now(), os.environ.get(meta.access_token_env))
    except ApiError as error:
        print(f"adpipeline: Meta token exchange failed: {error.message}", file=sys.stderr)
        return 2
    if token.status != "valid":
        print(f"adpipeline: the exchanged token does not verify: {token.last_error}", file=sys.stderr)
        return 2
    expiry = "never (system user)" if token.never_expires else token.expires_at.isoformat()
    print(f"meta/default: exchanged and stored a long-lived token; verified with debug_token; expires {expiry}")
    if token.data_access_expires_at:
        print(f"data access expires {token.data_access_expires_at.isoformat()}")
    print(f"scopes: {', '.join(sorted(token.scopes or [])) or '-'}")
    lacking = missing_scopes(token.scopes)
    if lacking:
        print(f"WARNING: missing permissions: {', '.join(lacking)}")
    return 0


# -- alerts ---------------------------------------------------------------------------------------

def cmd_alerts(args: argparse.Namespace) -> int:
    """list: open alerts (exit 2 if any is critical, 1 if any is open); test: a message through every sink."""
    from adpipeline.config import get_config

    config = get_config().alerts
    if args.action == "test":
        from adpipeline.monitoring.sinks import send_test

        if not config.sinks:
            print("no alert sinks configured (alerts.sinks in adpipeline.yaml): alerts go to the log and ops.alerts")
            return 0
        results = send_test(config, clock.now())
        for sink in config.sinks:
            error = results[sink.name]
            print(f"{sink.name} ({sink.type}): " + ("delivered" if error is None else f"FAILED: {error}"))
        return 1 if any(results.values()) else 0
    from adpipeline.monitoring.alerts import open_alerts
    from adpipeline.warehouse import db
    from adpipeline.warehouse.embedded import warehouse_url

    url = warehouse_url()
    db.migrate(url)
    with db.connect(url) as conn:
        rows = open_alerts(conn)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    elif not rows:
        print("no open alerts")
    else:
        for row in rows:
            row["opened_at"] = f"{row['opened_at']:%Y-%m-%d %H:%M} UTC"
            row["where"] = " / ".join(p for p in (row["source"], row["scope"]) if p) or None
        print(_table(rows, ["severity", "opened_at", "where", "title", "notified", "undelivered"]))
    severities = {r["severity"] for r in rows}
    return 2 if "critical" in severities else 1 if rows else 0


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line([c.upper() for c in columns]), *map(line, cells)])


# -- demo / dev / sandbox --------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from adpipeline.demo import run_demo

    return run_demo(keep_warehouse=args.keep_warehouse)


def cmd_dev(args: argparse.Namespace) -> int:
    from adpipeline.dev import run_dev

    return run_dev(port=args.port)


def _existing_stack() -> str | None:
    """The warehouse DSN of the stack already in use (configured, or the embedded server if it runs), with
    DAGSTER_HOME exported for it; None when the embedded warehouse is not running (reading or checking one
    nobody started would only find it empty)."""
    from adpipeline.stack import prepare_dagster_home
    from adpipeline.warehouse.embedded import WAREHOUSE_URL_ENV, default_server, export_environment

    url = os.environ.get(WAREHOUSE_URL_ENV)
    if not url:
        port = default_server().running_port()
        if port is None:
            return None
        url = default_server().dsn(port)
    home = Path(export_environment(url)["DAGSTER_HOME"])
    if not (home / "dagster.yaml").exists():
        prepare_dagster_home(home)
    return url


def _load_defs():
    from adpipeline.definitions import defs

    return defs


def cmd_doctor(args: argparse.Namespace) -> int:
    """Read the instance the CLI's stack would use (the embedded warehouse's unless configured) and report."""
    from adpipeline.monitoring.doctor import diagnose, unreachable

    if _existing_stack() is None:
        return unreachable("the embedded warehouse (which holds the Dagster instance) is not running", args.json)
    return diagnose(_load_defs, args.json)


def cmd_check(args: argparse.Namespace) -> int:
    """Run the selected asset checks once on the configured warehouse and instance (see monitoring/runner.py)."""
    from adpipeline.monitoring.runner import EXIT_UNREACHABLE, fail, run
    from adpipeline.warehouse.embedded import WAREHOUSE_URL_ENV

    url = _existing_stack()
    if url is None:
        return fail(EXIT_UNREACHABLE, "the embedded warehouse (which holds the Dagster instance) is not running; "
                    f"start it (`adpipeline dev`) or set {WAREHOUSE_URL_ENV}", args.json)
    return run(_load_defs, url, select_tokens=args.select, fail_on=args.fail_on, junit=args.junit_xml,
               as_json=args.json)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from adpipeline.sandbox.server import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adpipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline once on the sandbox APIs and the embedded warehouse")
    demo.add_argument("--keep-warehouse", action="store_true", help="leave the embedded warehouse running afterwards")
    demo.set_defaults(func=cmd_demo)

    dev = sub.add_parser("dev", help="Dagster UI + daemon on the sandbox APIs and the embedded warehouse")
    dev.add_argument("--port", type=int, default=3000, help="webserver port (default 3000)")
    dev.set_defaults(func=cmd_dev)

    sandbox = sub.add_parser("sandbox", help="serve the API emulations (Meta, Breezeway, GA4)")
    from adpipeline.sandbox.server import add_arguments

    add_arguments(sandbox)
    sandbox.set_defaults(func=cmd_sandbox)

    doctor = sub.add_parser("doctor", help="daemon heartbeats, schedules/sensors, stuck runs, latest checks; "
                                           "exit 2 on a critical finding (for cron, liveness probes, CI)")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)

    check = sub.add_parser("check", help="run asset checks once without materializing (for CI); evaluations are "
                                         "recorded in the Dagster instance; exit 0 pass, 1 warn (--fail-on warn), "
                                         "2 error, 3 warehouse/instance unreachable, 4 configuration error")
    check.add_argument("--select", action="append", default=[], metavar="KEYS|GROUPS|SOURCES",
                       help="comma-separated check keys (meta/ads_insights:lateness), asset keys, groups, sources "
                            "or check names; repeatable; default: every standalone check")
    check.add_argument("--fail-on", choices=["warn", "error"], default="error",
                       help="the lowest severity that fails (exit code and JUnit); default error")
    check.add_argument("--junit-xml", type=Path, metavar="FILE", help="write one JUnit testcase per check to FILE")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_check)

    warehouse = sub.add_parser("warehouse", help="the Postgres warehouse")
    warehouse.add_argument("action", choices=["url", "env", "migrate", "stop"],
                           help="url: start if needed and print a DSN for psql/BI tools; env: print `export` lines "
                                "for plain dbt (eval \"$(adpipeline warehouse env)\"; cd dbt_project; dbt build); "
                                "migrate; stop")
    warehouse.set_defaults(func=cmd_warehouse)

    tokens = sub.add_parser("tokens", help="API tokens in the token store")
    tokens.add_argument("action", choices=["status", "exchange"],
                        help="status: every stored token's health; exchange PLATFORM TOKEN: the manual recovery path "
                             "(exchange a short-lived token for a long-lived one, store it, verify it)")
    tokens.add_argument("platform", nargs="?", help="exchange: the platform (meta)")
    tokens.add_argument("token", nargs="?", default="-",
                        help="exchange: the short-lived token, or - (default) to read it from stdin "
                             "(out of shell history)")
    tokens.add_argument("--json", action="store_true")
    tokens.set_defaults(func=cmd_tokens)

    alerts = sub.add_parser("alerts", help="alerts and their sinks")
    alerts.add_argument("action", choices=["list", "test"],
                        help="list: open alerts (exit 2 if any is critical); test: send a test message through every "
                             "configured sink (exit 1 if one fails)")
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(func=cmd_alerts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line, not a traceback, for expected failures
        from adpipeline.config import ConfigError
        from adpipeline.warehouse.embedded import WarehouseError
        from adpipeline.warehouse.tokens import TokenStoreError

        if isinstance(exc, (ConfigError, WarehouseError, TokenStoreError)):
            print(f"adpipeline: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
