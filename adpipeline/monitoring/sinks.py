"""Alert sinks: Slack incoming webhooks, a generic JSON webhook (PagerDuty Events v2-shaped) and SMTP e-mail.

`deliver_pending` drains the outbox (ops.alert_deliveries) sink by sink. A sink that fails is backed off as a
whole (every due message of it waits for the next attempt, none is dropped) and the next sink is served; when
more messages than `summary_after` are due for one sink at once they go out as one summary, so an outage of
twenty scopes, or a sink coming back after a night, is one message rather than forty.

Secrets (webhook URLs carry a token in their path, SMTP passwords) are read from the environment when sending,
registered for redaction, and never put in an error: errors keep only the HTTP status or the exception's class.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from email import policy as email_policy
from email.message import EmailMessage

import psycopg
import requests

from adpipeline.config import AlertsConfig, AlertSink
from adpipeline.http.redact import redact, register_secret

log = logging.getLogger("adpipeline.alerts")
TIMEOUT_S = 10
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
SUMMARY_LINES = 15
_EMOJI = {"critical": ":red_circle:", "warning": ":warning:", "info": ":white_check_mark:"}


class DeliveryError(RuntimeError):
    """A sink did not accept a message; the text never holds a secret."""


def backoff(attempts: int) -> timedelta:
    """Wait before the next attempt after `attempts` failed ones: 30 s, 1 min, 2 min ... capped at 1 h."""
    return min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_MAX)


# -- messages ---------------------------------------------------------------------------------------

def headline(message: dict) -> str:
    label = {"resolved": "RESOLVED", "reminder": f"STILL {message['severity'].upper()}"}.get(
        message["kind"], message["severity"].upper())
    return f"[{label}] {message['title'].removeprefix('resolved: ')}"


def text_body(message: dict) -> str:
    """The plain-text body every sink carries: what, where, what to do, where to look."""
    source, asset = message.get("source"), message.get("asset_key")
    if source and asset and asset.startswith(f"{source}/"):
        source = None  # meta/ads_insights already says meta
    where = " / ".join(p for p in (source, message.get("scope"), asset) if p)
    lines = [message.get("text") or ""]
    if where:
        lines.append(f"Where: {where}")
    if message["kind"] == "reminder":
        lines.append(f"Open since {message['opened_at']}")
    if message.get("action") and message["kind"] != "resolved":
        lines.append(f"What to do: {message['action']}")
    if message.get("link"):
        lines.append(f"Dagster: {message['link']}")
    return redact("\n".join(lines))


def summarise(messages: Sequence[dict], ui_base_url: str) -> dict:
    """One message standing for many (worst first)."""
    order = {"critical": 0, "warning": 1, "info": 2}
    ranked = sorted(messages, key=lambda m: (m["kind"] == "resolved", order[m["severity"]]))
    counts: dict[str, int] = {}
    for m in messages:
        label = "resolved" if m["kind"] == "resolved" else m["severity"]
        counts[label] = counts.get(label, 0) + 1
    lines = [headline(m) + (f" ({m['scope']})" if m.get("scope") else "") for m in ranked[:SUMMARY_LINES]]
    if len(ranked) > SUMMARY_LINES:
        lines.append(f"... and {len(ranked) - SUMMARY_LINES} more (`adpipeline alerts list`)")
    worst = ranked[0]["severity"] if ranked[0]["kind"] != "resolved" else "info"
    tally = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: order.get(kv[0], 3)))
    return {"kind": "summary", "severity": worst, "title": f"{len(messages)} alerts: {tally}", "text": "\n".join(lines),
            "source": None, "scope": None, "asset_key": None, "action": "See each alert with `adpipeline alerts list`; "
            "the first line of each names what failed.", "link": f"{ui_base_url.rstrip('/')}/runs",
            "dedupe_key": "summary", "count": len(messages), "at": ranked[0]["at"]}


# -- sending ----------------------------------------------------------------------------------------

def _secret(name: str | None, *, secret: bool = True) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise DeliveryError(f"environment variable {name} is not set")
    if secret:  # a user name is not: masking it would mask that word everywhere
        register_secret(value)
    return value


def _post(url: str, body: dict) -> None:
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT_S)
    except requests.RequestException as exc:  # its text holds the URL: keep only the class
        raise DeliveryError(f"{type(exc).__name__} posting to the webhook") from None
    if response.status_code >= 300:
        raise DeliveryError(f"HTTP {response.status_code} from the webhook")


def slack_body(message: dict) -> dict:
    head = f"{_EMOJI.get(message['severity'], '')} *{headline(message)}*".strip()
    body = text_body(message)
    if message.get("link"):
        body = body.replace(f"Dagster: {message['link']}", f"<{message['link']}|Open in Dagster>")
    return {"text": redact(f"{head}\n{body}")}


def webhook_body(message: dict, routing_key: str | None) -> dict:
    """PagerDuty Events v2 shape (a routing key makes it a valid PD event); Opsgenie/Teams relays read `adpipeline`."""
    event = {
        "event_action": "resolve" if message["kind"] == "resolved" else "trigger",
        "dedup_key": message["dedupe_key"],
        "payload": {"summary": redact(headline(message))[:1024], "severity": message["severity"],
                    "source": "/".join(p for p in ("adpipeline", message.get("source"), message.get("scope")) if p),
                    "custom_details": {"text": text_body(message), "action": message.get("action"),
                                       "kind": message["kind"]}},
        "links": [{"href": message["link"], "text": "Dagster"}] if message.get("link") else [],
        "adpipeline": {k: v for k, v in message.items() if k != "text"} | {"text": text_body(message)},
    }
    if routing_key:
        event["routing_key"] = routing_key
    return event


def email_message(message: dict, sink: AlertSink) -> EmailMessage:
    # headers up to RFC 5322's 998 characters: the default 78 folds a long subject onto a line of its own
    email = EmailMessage(policy=email_policy.SMTP.clone(max_line_length=998))
    email["Subject"] = redact(f"[adpipeline] {headline(message)}")
    email["From"] = sink.sender
    email["To"] = ", ".join(sink.recipients)
    email.set_content(text_body(message) + "\n")
    return email


def send(sink: AlertSink, message: dict) -> None:
    """Deliver one message through one sink, or raise DeliveryError."""
    if sink.type == "slack":
        _post(_secret(sink.url_env), slack_body(message))
    elif sink.type == "webhook":
        url, key = _secret(sink.url_env), _secret(sink.routing_key_env)
        _post(url, webhook_body(message, key))
    else:
        user, password = _secret(sink.username_env, secret=False), _secret(sink.password_env)
        try:
            with smtplib.SMTP(sink.smtp_host, sink.smtp_port, timeout=TIMEOUT_S) as smtp:
                if sink.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if user:
                    smtp.login(user, password)
                smtp.send_message(email_message(message, sink))
        except (OSError, smtplib.SMTPException) as exc:
            code = getattr(exc, "smtp_code", None)
            raise DeliveryError(f"{type(exc).__name__}{f' {code}' if code else ''} from {sink.smtp_host}") from None


# -- the outbox -------------------------------------------------------------------------------------

def deliver_pending(conn: psycopg.Connection, config: AlertsConfig, now: datetime) -> dict[str, str]:
    """Send what is due, sink by sink; {sink: outcome} for the sinks that had something due."""
    outcomes = {}
    for sink in config.sinks:
        rows = conn.execute(
            "SELECT id, message, attempts FROM ops.alert_deliveries WHERE sink = %s AND status = 'pending'"
            " AND next_attempt_at <= %s ORDER BY id FOR UPDATE SKIP LOCKED", (sink.name, now),
        ).fetchall()
        if not rows:
            conn.commit()
            continue
        summary = len(rows) > config.summary_after
        pending = list(rows)  # what is still undelivered if the sink fails midway
        try:
            if summary:
                send(sink, summarise([r[1] for r in rows], config.ui_base_url))
                _delivered(conn, [r[0] for r in rows], "summary", now)
                pending = []
            while pending:
                send(sink, pending[0][1])
                _delivered(conn, [pending[0][0]], "message", now)
                pending.pop(0)
        except DeliveryError as error:
            attempts = max(r[2] for r in pending) + 1
            wait = backoff(attempts)
            conn.execute("UPDATE ops.alert_deliveries SET attempts = attempts + 1, last_error = %s,"
                         " next_attempt_at = %s WHERE id = ANY(%s)",
                         (redact(str(error)), now + wait, [r[0] for r in pending]))
            conn.commit()
            log.warning("alert sink %s failed (%s): %d message(s) kept, next attempt in %s", sink.name, error,
                        len(pending), wait)
            outcomes[sink.name] = f"failed: {error}"
            continue
        conn.commit()
        outcomes[sink.name] = f"{len(rows)} delivered" + (" as one summary" if summary else "")
    return outcomes


def _delivered(conn: psycopg.Connection, ids: list[int], delivered_as: str, now: datetime) -> None:
    conn.execute("UPDATE ops.alert_deliveries SET status = 'delivered', delivered_at = %s, delivered_as = %s,"
                 " attempts = attempts + 1 WHERE id = ANY(%s)", (now, delivered_as, ids))


def send_test(config: AlertsConfig, now: datetime) -> dict[str, str | None]:
    """A test message straight through every sink (not queued): {sink: None if delivered, else the error}."""
    message = {"kind": "test", "severity": "info", "signal": "test", "title": "adpipeline test message",
               "text": "If you can read this, adpipeline alerts reach this channel.", "source": None, "scope": None,
               "asset_key": None, "action": None, "link": config.ui_base_url, "dedupe_key": "adpipeline-test",
               "opened_at": now.isoformat(), "at": now.isoformat()}
    results = {}
    for sink in config.sinks:
        try:
            send(sink, message)
            results[sink.name] = None
        except DeliveryError as error:
            results[sink.name] = redact(str(error))
    return results
