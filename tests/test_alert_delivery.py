"""Alerts reach people: real loopback receivers (an HTTP server standing in for Slack and a PagerDuty-style
webhook, aiosmtpd with STARTTLS and AUTH for e-mail), a real Dagster instance and real check evaluations.

Each test gets a fresh warehouse database on the session's server, so its alerts and outbox are its own.
"""

from __future__ import annotations

import base64
import email
import email.policy
import ipaddress
import json
import re
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from adpipeline import clock
from adpipeline.config import AlertsConfig, AlertSink
from adpipeline.http.redact import register_secret
from adpipeline.monitoring.alerts import Alert, due_reminders, raise_alert, resolve_alert
from adpipeline.monitoring.checks import meta_style_token_checks
from adpipeline.monitoring.sensors import (
    check_alert_sensor,
    run_failure_alert_sensor,
    run_recovery_alert_sensor,
    source_of_step,
)
from adpipeline.monitoring.sinks import deliver_pending
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import Token, TokenStore

PROJECT = Path(__file__).resolve().parent.parent
HOOK_SECRET = "T17HOOKSECRETzx81"  # the token part of a Slack incoming-webhook URL
SMTP_PASSWORD = "smtp-pw-t17-9c4e"
ROUTING_KEY = "pd-routing-t17-77ab"
CANARY = "EAAcanaryT17" + "q" * 24  # a Meta-token-shaped secret that leaks into an error text


# -- loopback receivers -----------------------------------------------------------------------------

class HttpReceiver:
    """Records every POST body per path; a path in `failing` answers 503 (a sink that is down)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict]] = defaultdict(list)
        self.raw: list[bytes] = []
        self.hits: dict[str, int] = defaultdict(int)
        self.failing: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits[self.path] += 1
                outer.raw.append(self.path.encode() + b" " + body)
                if self.path in outer.failing:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.bodies[self.path].append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MailHandler:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        assert session.authenticated and session.ssl is not None  # AUTH after STARTTLS, or no mail
        self.messages.append(envelope.original_content)
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"t17-mailer" and \
        auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)  # valid on any date the suite runs (faketime included)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + timedelta(days=365 * 30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "smtp.crt", folder / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    cert, key = _self_signed(tmp_path_factory.mktemp("smtp"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    handler = MailHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), tls_context=tls, require_starttls=True,
                            authenticator=_authenticate, auth_require_tls=True)
    controller.start()
    yield {"handler": handler, "port": controller.port, "cert": cert}
    controller.stop()


@pytest.fixture
def http():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def alerts_db(fresh_warehouse, monkeypatch) -> str:
    monkeypatch.setenv("ADPIPELINE_TOKEN_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())  # not embedded
    return fresh_warehouse


@pytest.fixture
def db_conn(alerts_db):
    with psycopg.connect(alerts_db) as conn:
        yield conn


@pytest.fixture
def routes(http, smtp, monkeypatch) -> AlertsConfig:
    """Three sinks: Slack and a PagerDuty-style webhook on the HTTP receiver, e-mail on aiosmtpd. Secrets in env."""
    monkeypatch.setenv("T17_SLACK_URL", f"{http.base}/services/T000/B000/{HOOK_SECRET}")
    monkeypatch.setenv("T17_HOOK_URL", f"{http.base}/pd/enqueue")
    monkeypatch.setenv("T17_PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("T17_SMTP_USER", "t17-mailer")
    monkeypatch.setenv("T17_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp["cert"]))  # the client trusts the loopback server's certificate
    smtp["handler"].messages.clear()
    return AlertsConfig(ui_base_url="http://dagster.test:3000", renotify_critical_minutes=240, summary_after=5, sinks=[
        AlertSink(name="slack", type="slack", url_env="T17_SLACK_URL"),
        AlertSink(name="pager", type="webhook", url_env="T17_HOOK_URL", routing_key_env="T17_PD_KEY",
                  severities=["critical"]),
        AlertSink(name="mail", type="email", smtp_host="127.0.0.1", smtp_port=smtp["port"], username_env="T17_SMTP_USER",
                  password_env="T17_SMTP_PASSWORD", sender="adpipeline@test.invalid",
                  recipients=["ops@test.invalid"]),
        AlertSink(name="breezeway-only", type="webhook", url_env="T17_HOOK_URL", sources=["breezeway"]),
    ])


SLACK_PATH = f"/services/T000/B000/{HOOK_SECRET}"


def received(http: HttpReceiver, smtp) -> dict[str, list]:
    """What each route received so far: Slack texts, webhook events, e-mail subjects+bodies."""
    parsed = [email.message_from_bytes(m, policy=email.policy.default) for m in smtp["handler"].messages]
    mails = [f"Subject: {m['Subject']}\n{m.get_content()}" for m in parsed]
    return {"slack": [b["text"] for b in http.bodies[SLACK_PATH]], "pager": list(http.bodies["/pd/enqueue"]),
            "mail": mails}


def clear(http: HttpReceiver, smtp) -> None:
    http.bodies.clear()
    smtp["handler"].messages.clear()


# -- scenarios --------------------------------------------------------------------------------------

@dg.asset(key=["meta", "access_token"])
def access_token() -> None:
    """A stand-in for the token asset: the checks under test are the real token checks."""


def test_token_expiry_is_one_critical_per_route_then_a_reminder_then_one_resolved(alerts_db, db_conn, routes, http,
                                                                                   smtp):
    now = clock.now()
    store = TokenStore(alerts_db)
    store.put(Token("meta", "default", access_token="t17-token-value", expires_at=now - timedelta(hours=1)))
    lifetime = meta_style_token_checks(["meta", "access_token"], platform="meta", scope="default",
                                       clock=lambda: now)[0]
    instance = dg.DagsterInstance.ephemeral()
    sensor = check_alert_sensor(routes)
    resources = {"warehouse": WarehouseResource()}

    def evaluate_and_deliver(later: timedelta = timedelta(0)) -> None:
        """Evaluate the real check, let the sensor see it, deliver what is due `later` than now."""
        dg.materialize([access_token, lifetime], instance=instance, resources=resources)
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor["value"]) as context:
            sensor(context)
            cursor["value"] = context.cursor
        deliver_pending(db_conn, routes, clock.now() + later)

    def remind_and_deliver(later: timedelta) -> int:
        queued = due_reminders(db_conn, routes.sinks, timedelta(minutes=routes.renotify_critical_minutes),
                               clock.now() + later)
        deliver_pending(db_conn, routes, clock.now() + later)
        return queued

    cursor = {"value": None}
    evaluate_and_deliver()
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1, got
    assert "[CRITICAL] check token_lifetime failed on meta/access_token" in got["slack"][0]
    assert "token expired: manual re-authentication required" in got["slack"][0]
    assert "adpipeline tokens exchange meta" in got["slack"][0]  # what to do
    assert "<http://dagster.test:3000/assets/meta/access_token?view=checks|Open in Dagster>" in got["slack"][0]
    event = got["pager"][0]
    assert event["event_action"] == "trigger" and event["routing_key"] == ROUTING_KEY
    assert event["payload"]["severity"] == "critical" and event["dedup_key"] == "check:meta/access_token:token_lifetime"
    assert "Subject: [adpipeline] [CRITICAL] check token_lifetime failed" in got["mail"][0]
    assert http.hits["/pd/enqueue"] == 1  # the breezeway-only route heard nothing of a Meta alert

    clear(http, smtp)
    evaluate_and_deliver()  # still expired: deduplicated, nothing new
    assert remind_and_deliver(timedelta(hours=3, minutes=50)) == 0  # before the 240-minute interval
    assert received(http, smtp) == {"slack": [], "pager": [], "mail": []}

    assert remind_and_deliver(timedelta(hours=4, minutes=5)) == 1
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1, got
    assert "[STILL CRITICAL]" in got["slack"][0] and "Open since" in got["slack"][0]
    assert remind_and_deliver(timedelta(hours=5)) == 0  # the next one is due 240 minutes after this one

    clear(http, smtp)
    store.put(Token("meta", "default", access_token="t17-token-value", expires_at=now + timedelta(days=60)))
    evaluate_and_deliver()
    evaluate_and_deliver()  # passing again: no second "resolved"
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1, got
    assert got["slack"][0].startswith(":white_check_mark: *[RESOLVED] check token_lifetime failed")
    assert got["pager"][0]["event_action"] == "resolve"
    assert got["pager"][0]["dedup_key"] == event["dedup_key"]  # closes the same PagerDuty incident
    assert db_conn.execute("SELECT count(*) FROM ops.alerts WHERE resolved_at IS NULL").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM ops.alert_deliveries WHERE status = 'pending'").fetchone()[0] == 0


def test_a_20_scope_outage_is_one_summary_per_route_and_its_recovery_another(db_conn, routes, http, smtp):
    now = clock.now()
    scopes = [f"act_{n:03d}" for n in range(20)]
    for scope in scopes:
        raise_alert(db_conn, Alert("critical", "asset_check", "check all_scopes_loaded failed on meta/ads_insights",
                                   f"meta/ads_insights {scope}: auth error: re-authenticate", f"t17:{scope}",
                                   source="meta", scope=scope), routes.sinks, now=now)
    deliver_pending(db_conn, routes, now)
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1, got
    assert "20 alerts: 20 critical" in got["slack"][0] and "... and 5 more" in got["slack"][0]
    assert "20 alerts: 20 critical" in got["mail"][0]
    assert db_conn.execute("SELECT count(*), min(delivered_as), max(delivered_as) FROM ops.alert_deliveries"
                           " WHERE status = 'delivered'").fetchone() == (60, "summary", "summary")

    clear(http, smtp)
    for scope in scopes:
        resolve_alert(db_conn, f"t17:{scope}", "loaded again", routes.sinks, now=now + timedelta(hours=1))
    deliver_pending(db_conn, routes, now + timedelta(hours=1))
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1, got
    assert "20 alerts: 20 resolved" in got["slack"][0]


def test_a_dead_sink_is_retried_with_backoff_while_the_others_deliver(db_conn, routes, http, smtp, monkeypatch):
    monkeypatch.setenv("T17_DEAD_URL", f"http://127.0.0.1:{_free_port()}/nobody-listens")
    dead = AlertSink(name="dead", type="webhook", url_env="T17_DEAD_URL")
    config = routes.model_copy(update={"sinks": [dead, *routes.sinks]})  # the dead ones come first
    http.failing.add("/pd/enqueue")  # the pager endpoint answers 503
    now = clock.now()
    raise_alert(db_conn, Alert("critical", "run_failure", "run of meta_hourly_job failed", "meta/ads_insights "
                               "act_1: throttled", "t17:dead", source="meta"), config.sinks, now=now)
    outcomes = deliver_pending(db_conn, config, now)
    assert outcomes["dead"].startswith("failed: ConnectionError") and outcomes["pager"] == "failed: HTTP 503 from the webhook"
    got = received(http, smtp)
    assert len(got["slack"]) == 1 and len(got["mail"]) == 1 and got["pager"] == []

    def state(sink):
        return db_conn.execute("SELECT status, attempts, next_attempt_at - %s, last_error FROM ops.alert_deliveries"
                               " WHERE sink = %s", (now, sink)).fetchone()

    assert state("pager") == ("pending", 1, timedelta(seconds=30), "HTTP 503 from the webhook")
    assert state("dead")[:3] == ("pending", 1, timedelta(seconds=30)) and "127.0.0.1" not in state("dead")[3]

    deliver_pending(db_conn, config, now + timedelta(seconds=10))  # backing off: not tried again yet
    assert http.hits["/pd/enqueue"] == 1
    deliver_pending(db_conn, config, now + timedelta(seconds=31))  # still down: the wait doubles
    assert http.hits["/pd/enqueue"] == 2 and state("pager")[:3] == ("pending", 2, timedelta(seconds=91))

    http.failing.clear()
    deliver_pending(db_conn, config, now + timedelta(seconds=91))
    assert len(received(http, smtp)["pager"]) == 1 and state("pager")[0] == "delivered"
    assert len(received(http, smtp)["slack"]) == 1  # nobody heard it twice
    assert state("dead")[:2] == ("pending", 3)  # never dropped


@dg.asset(key=["t17", "feed"])
def feed() -> None:
    """A stand-in asset."""


def _history(instance, outcomes: list[bool]) -> None:
    """A check evaluated once per outcome, with no sensor watching (a demo's runs before `adpipeline dev`)."""
    state = {}

    @dg.asset_check(asset=feed, name="t17_signal")
    def signal() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=state["passed"], severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"summary": "feed is 5 h late"})

    for passed in outcomes:
        state["passed"] = passed
        dg.materialize([feed, signal], instance=instance)


def test_a_first_start_on_an_instance_with_history_alerts_on_the_current_state_only(db_conn, routes, http, smtp):
    resources = {"warehouse": WarehouseResource()}
    recovered = dg.DagsterInstance.ephemeral()
    _history(recovered, [False, True] * 8)  # 16 failures, 16 recoveries, healthy now
    with dg.build_sensor_context(instance=recovered, resources=resources) as context:
        assert "16 check evaluation(s), 1 check(s): 0 alert(s) raised, 0 resolved" in check_alert_sensor(routes)(context).skip_message
    deliver_pending(db_conn, routes, clock.now())
    assert received(http, smtp) == {"slack": [], "pager": [], "mail": []}
    assert db_conn.execute("SELECT count(*) FROM ops.alerts").fetchone()[0] == 0

    failing = dg.DagsterInstance.ephemeral()
    _history(failing, [True, False] * 8)  # failing now: one alert, on the current state
    with dg.build_sensor_context(instance=failing, resources=resources) as context:
        check_alert_sensor(routes)(context)
    deliver_pending(db_conn, routes, clock.now())
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1
    assert db_conn.execute("SELECT severity, count(*) FROM ops.alerts GROUP BY 1").fetchall() == [("critical", 1)]


def test_a_failed_multi_asset_step_is_routed_by_its_source(db_conn, routes, http, smtp):
    """A multi-asset's step key is its name (meta_insights, not meta__...): the alert still names its source, so a
    route limited to that source gets it."""
    @dg.multi_asset(name="breezeway_t17_sync", specs=[dg.AssetSpec(["breezeway", "t17_tasks"])])
    def sync() -> None:
        raise dg.Failure(description="breezeway/t17_tasks austin: HTTP 503 after 5 attempts")

    defs = dg.Definitions(assets=[sync], jobs=[dg.define_asset_job("t17_bw_job", selection=[sync])])
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("t17_bw_job").execute_in_process(instance=instance, raise_on_error=False)
    run = instance.get_run_by_id(result.run_id)
    event = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
    sensor = run_failure_alert_sensor(routes)
    sensor(dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=event, dagster_instance=instance,
                                              dagster_run=run, resources={"warehouse": WarehouseResource()}
                                              ).for_run_failure())
    deliver_pending(db_conn, routes, clock.now())
    assert db_conn.execute("SELECT source FROM ops.alerts WHERE dedupe_key = 'run_failure:t17_bw_job'").fetchall() \
        == [("breezeway",)]
    assert len(received(http, smtp)["pager"]) == 2  # the critical pager route and the breezeway-only route


def test_step_keys_name_their_source():
    assert [source_of_step(k) for k in ("meta_insights", "meta__ad_accounts", "breezeway__reservations",
                                         "ga4__traffic_acquisition", "dbt_meta_daily", None)] \
        == ["meta", "meta", "breezeway", "ga4", None, None]


def test_a_run_failure_is_one_alert_per_incident_with_the_classified_sentence_and_resolves(db_conn, routes, http,
                                                                                          smtp):
    state = {"fail": True}

    @dg.asset(key=["meta", "t17_insights"])
    def insights() -> None:
        if state["fail"]:
            raise dg.Failure(description="meta/t17_insights act_1: token expired: manual re-authentication required "
                                         "(adpipeline tokens exchange meta -)")

    job = dg.define_asset_job("t17_job", selection=[insights])
    defs = dg.Definitions(assets=[insights], jobs=[job])
    instance = dg.DagsterInstance.ephemeral()
    resources = {"warehouse": WarehouseResource()}

    def run_and_notify() -> dg.DagsterRun:
        result = defs.resolve_job_def("t17_job").execute_in_process(instance=instance, raise_on_error=False)
        run = instance.get_run_by_id(result.run_id)
        status = dg.DagsterEventType.RUN_FAILURE if state["fail"] else dg.DagsterEventType.RUN_SUCCESS
        event = instance.all_logs(run.run_id, of_type=status)[0].dagster_event
        sensor = run_failure_alert_sensor(routes) if state["fail"] else run_recovery_alert_sensor(routes)
        context = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=event,
                                                     dagster_instance=instance, dagster_run=run, resources=resources)
        sensor(context.for_run_failure() if state["fail"] else context)
        deliver_pending(db_conn, routes, clock.now())
        return run

    first = run_and_notify()
    run_and_notify()  # the same incident: no second message
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1, got
    text = got["slack"][0]
    assert "[CRITICAL] run of t17_job failed" in text
    assert "meta__t17_insights: meta/t17_insights act_1: token expired: manual re-authentication required" in text
    assert "Execution of run" not in text  # not Dagster's generic text
    assert f"<http://dagster.test:3000/runs/{first.run_id}|Open in Dagster>" in text

    clear(http, smtp)
    state["fail"] = False
    run_and_notify()
    got = received(http, smtp)
    assert len(got["slack"]) == 1 and got["slack"][0].startswith(":white_check_mark: *[RESOLVED] run of t17_job failed")


def test_no_secret_reaches_any_sink_body_or_the_outbox(db_conn, routes, http, smtp):
    register_secret(CANARY)  # as the Meta resource does with the token it reads
    now = clock.now()
    leaky = f"GET /act_1/insights?access_token={CANARY} failed: token {CANARY} rejected"
    raise_alert(db_conn, Alert("critical", "run_failure", f"run failed ({CANARY})", leaky, "t17:canary",
                               source="meta", action=f"retry with {CANARY}"), routes.sinks, now=now)
    deliver_pending(db_conn, routes, now)
    due_reminders(db_conn, routes.sinks, timedelta(minutes=240), now + timedelta(hours=4))
    deliver_pending(db_conn, routes, now + timedelta(hours=4))
    resolve_alert(db_conn, "t17:canary", f"ok now ({CANARY})", routes.sinks, now=now + timedelta(hours=5))
    for n in range(7):  # with the resolution: 8 due at once, one summary
        raise_alert(db_conn, Alert("warning", "asset_check", f"t {n} {CANARY}", leaky, f"t17:c{n}", source="meta"),
                    routes.sinks, now=now + timedelta(hours=5))
    deliver_pending(db_conn, routes, now + timedelta(hours=5))

    bodies = [*http.raw, *smtp["handler"].messages]
    assert len(http.bodies[SLACK_PATH]) == 3 and len(smtp["handler"].messages) == 3  # opened, reminder, summary
    assert "8 alerts: 7 warning, 1 resolved" in http.bodies[SLACK_PATH][-1]["text"]
    for body in bodies:
        path, _, payload = body.partition(b" ") if body.startswith(b"/") else (b"", b"", body)
        for secret in (CANARY, SMTP_PASSWORD, HOOK_SECRET):
            assert secret.encode() not in payload, (secret, payload[:300])
    stored = db_conn.execute("SELECT string_agg(message::text, ' ') || (SELECT string_agg(title || message || "
                             "coalesce(action, ''), ' ') FROM ops.alerts) FROM ops.alert_deliveries").fetchone()[0]
    assert CANARY not in stored and HOOK_SECRET not in stored


def _write_config(tmp_path: Path, sinks_yaml: str) -> Path:
    base = (PROJECT / "adpipeline.yaml").read_text().split("\nalerts:")[0]
    path = tmp_path / "adpipeline.yaml"
    path.write_text(base + "\nalerts:\n  sinks:\n" + sinks_yaml)
    return path


def test_alerts_test_sends_through_every_sink_and_names_the_dead_one(tmp_path, routes, http, smtp, alerts_db):
    config = _write_config(tmp_path, f"""\
    - {{name: slack, type: slack, url_env: T17_SLACK_URL}}
    - {{name: mail, type: email, smtp_host: 127.0.0.1, smtp_port: {smtp['port']}, username_env: T17_SMTP_USER,
       password_env: T17_SMTP_PASSWORD, sender: a@test.invalid, recipients: [ops@test.invalid]}}
    - {{name: dead, type: webhook, url_env: T17_DEAD_URL}}
""")
    env = {**os.environ, "ADPIPELINE_CONFIG": str(config),
           "T17_DEAD_URL": f"http://127.0.0.1:{_free_port()}/{HOOK_SECRET}x"}
    cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "alerts", "test"], env=env, capture_output=True,
                         text=True, cwd=PROJECT, timeout=120)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert cli.stdout.splitlines() == ["slack (slack): delivered", "mail (email): delivered",
                                       "dead (webhook): FAILED: ConnectionError posting to the webhook"]
    got = received(http, smtp)
    assert len(got["slack"]) == 1 and "adpipeline test message" in got["slack"][0] and len(got["mail"]) == 1
    assert HOOK_SECRET not in cli.stdout + cli.stderr


def test_alerts_list_shows_open_alerts_worst_first(db_conn, alerts_db):
    raise_alert(db_conn, Alert("warning", "asset_check", "check lateness failed on ga4/sessions", "6 h late",
                               "t17:w", source="ga4", scope="310000001"))
    raise_alert(db_conn, Alert("critical", "token_job_gap", "Meta token job not running", "3 h", "t17:c",
                               source="meta", scope="default"))
    resolve_alert(db_conn, "t17:w", "fine")
    raise_alert(db_conn, Alert("warning", "asset_check", "check lateness failed on breezeway/tasks", "3 h late",
                               "t17:w2", source="breezeway"))
    env = {**os.environ, "ADPIPELINE_WAREHOUSE_URL": alerts_db}
    cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "alerts", "list", "--json"], env=env,
                         capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert cli.returncode == 2, cli.stdout + cli.stderr
    rows = json.loads(cli.stdout)
    assert [(r["severity"], r["title"]) for r in rows] == [("critical", "Meta token job not running"),
                                                         ("warning", "check lateness failed on breezeway/tasks")]


def test_the_watchdog_routes_its_findings_with_the_runbook_step(db_conn, alerts_db, routes, http, smtp):
    from adpipeline.monitoring.sensors import watchdog_sensor

    store = TokenStore(alerts_db)
    store.put(Token("meta", "default", access_token="t17-token-value", last_checked_at=clock.now() - timedelta(hours=3)))
    with dg.instance_for_test() as instance, dg.build_sensor_context(
            instance=instance, resources={"warehouse": WarehouseResource()}) as context:
        watchdog_sensor([], routes)(context)
    deliver_pending(db_conn, routes, clock.now())
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["pager"]) == len(got["mail"]) == 1, got
    assert "[CRITICAL] Meta token job not running" in got["slack"][0] and "has not run for 3.0 h" in got["slack"][0]
    assert "Where: meta / default" in got["mail"][0] and "the Meta token schedule is started" in got["mail"][0]


@pytest.mark.parametrize("sink, problem", [
    ("{name: s, type: slack}", "a slack sink needs url_env"),
    ("{name: m, type: email, smtp_host: mail.example.com, sender: a@example.com}", "needs smtp_host, sender and "
     "recipients"),
    ("{name: w, type: webhook, url_env: 'https://hooks.slack.com/services/T0/B0/x'}", "is not an environment variable "
     "NAME"),
    ("{name: w, type: webhook, url_env: HOOK, severities: [info]}", "alerts.sinks.0.severities.0"),
])
def test_a_sink_config_that_cannot_work_is_refused_naming_the_key(sink, problem):
    from adpipeline.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_config(f"alerts:\n  sinks:\n    - {sink}\n")


def test_freshness_state_changes_alert_on_the_latest_state_per_asset(db_conn, routes, http, smtp):
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    from adpipeline.monitoring.sensors import freshness_alert_sensor

    def change(instance, asset: list[str], *states: FreshnessState) -> None:
        previous = FreshnessState.UNKNOWN
        for state in states:  # as the freshness daemon reports them
            instance.report_runless_asset_event(FreshnessStateChange(
                key=dg.AssetKey(asset), new_state=state, previous_state=previous, state_change_timestamp=0.0))
            previous = state

    P, W, F = FreshnessState.PASS, FreshnessState.WARN, FreshnessState.FAIL
    instance = dg.DagsterInstance.ephemeral()
    change(instance, ["breezeway", "reservations"], W, F, P, W, F)  # stale now
    change(instance, ["ga4", "sessions"], W, F, P)  # history only: fresh now
    sensor = freshness_alert_sensor(routes)
    resources = {"warehouse": WarehouseResource()}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        sensor(context)
        cursor = context.cursor
    deliver_pending(db_conn, routes, clock.now())
    got = received(http, smtp)
    assert len(got["slack"]) == len(got["mail"]) == 1, got
    assert "[CRITICAL] breezeway/reservations is stale (FAIL)" in got["slack"][0]
    # both webhook routes share the receiver's path: the pager (with its key) and the breezeway-only route
    assert sorted("routing_key" in event for event in got["pager"]) == [False, True]

    clear(http, smtp)
    change(instance, ["breezeway", "reservations"], P)
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        sensor(context)
    deliver_pending(db_conn, routes, clock.now())
    got = received(http, smtp)
    assert len(got["slack"]) == 1 and "[RESOLVED] breezeway/reservations is stale" in got["slack"][0]
    assert [event["event_action"] for event in got["pager"]] == ["resolve", "resolve"]


def test_an_unclassified_exception_is_reported_by_its_own_first_line_not_dagsters_wrapper():
    from adpipeline.monitoring.sensors import failure_sentence

    @dg.asset(key=["breezeway", "t17_tasks"])
    def tasks() -> None:
        raise RuntimeError("breezeway nashville: unexpected payload shape\nTraceback detail that is not the sentence")

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([tasks], instance=instance, raise_on_error=False)
    failures = [r.dagster_event for r in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    assert failure_sentence(failures, "generic") == ("breezeway__t17_tasks: RuntimeError: breezeway nashville: "
                                                     "unexpected payload shape")
    assert failure_sentence([], "generic") == "generic"
