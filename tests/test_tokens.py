"""Token store: ciphertext at rest, environment seeding, locked refresh, health per the thresholds table."""

from __future__ import annotations

import base64
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.exceptions import InvalidTag

from adpipeline import clock
from adpipeline.monitoring.thresholds import TokenHealth, token_health
from adpipeline.warehouse.tokens import KEY_ENV, OLD_KEYS_ENV, Keyring, Token, TokenStore, TokenStoreError

CANARY = "CANARY-TOKEN-7f3a9c1e55d2"
NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


@pytest.fixture
def store(warehouse_url, conn) -> TokenStore:
    conn.execute("DELETE FROM ops.platform_tokens WHERE platform LIKE 't\\_%' OR scope LIKE 't\\_%'")
    conn.commit()
    return TokenStore(warehouse_url)


def test_tokens_are_ciphertext_in_the_table(store, conn):
    store.put(Token("t_meta", "default", access_token=CANARY, refresh_token=CANARY + "-refresh"))
    access, refresh, key_id = conn.execute(
        "SELECT access_token_enc, refresh_token_enc, key_id FROM ops.platform_tokens WHERE platform = 't_meta'"
    ).fetchone()
    assert CANARY.encode() not in bytes(access) and CANARY.encode() not in bytes(refresh)
    dump = conn.execute("SELECT row_to_json(t)::text FROM ops.platform_tokens t WHERE platform = 't_meta'").fetchone()[0]
    assert CANARY not in dump
    assert key_id == store.keyring.current_id
    token = store.get("t_meta", "default")
    assert (token.access_token, token.refresh_token) == (CANARY, CANARY + "-refresh")
    assert CANARY not in repr(token)


def test_ciphertext_is_bound_to_its_row(store, conn):
    store.put(Token("t_meta", "a", access_token=CANARY))
    conn.execute(
        "INSERT INTO ops.platform_tokens (platform, scope, access_token_enc, key_id)"
        " SELECT platform, 'b', access_token_enc, key_id FROM ops.platform_tokens WHERE platform = 't_meta' AND scope = 'a'"
    )
    conn.commit()
    with pytest.raises(InvalidTag):
        store.get("t_meta", "b")


def test_key_file_is_generated_0600_and_keys_rotate(warehouse_url, warehouse_home, conn, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    old_store = TokenStore(warehouse_url)
    key_file = warehouse_home / "token.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    old_store.put(Token("t_rot", "x", access_token=CANARY))
    new_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    monkeypatch.setenv(KEY_ENV, new_key)
    monkeypatch.setenv(OLD_KEYS_ENV, key_file.read_text())
    rotated = TokenStore(warehouse_url)
    assert rotated.keyring.current_id != old_store.keyring.current_id
    assert rotated.get("t_rot", "x").access_token == CANARY  # old rows still decrypt
    rotated.put(rotated.get("t_rot", "x"))  # re-encrypted under the new key
    assert conn.execute("SELECT key_id FROM ops.platform_tokens WHERE platform = 't_rot'").fetchone()[0] == rotated.keyring.current_id
    monkeypatch.delenv(OLD_KEYS_ENV)
    monkeypatch.setenv(KEY_ENV, base64.urlsafe_b64encode(os.urandom(32)).decode())
    with pytest.raises(TokenStoreError, match="not configured"):
        TokenStore(warehouse_url).get("t_rot", "x")


def _key_of_a_racing_worker(path, start, answers):
    from adpipeline.warehouse.tokens import _key_file

    start.wait()
    try:
        answers.put(("key", _key_file(path)))
    except Exception as error:  # noqa: BLE001 - the race's loser reports what it saw
        answers.put(("error", repr(error)))


def test_workers_that_start_together_on_a_new_home_all_get_the_one_key_none_a_half_written_one(tmp_path):
    """CI: the demo's forked workers made the key file at once; one read it between create and write and failed
    with 'a token key must be urlsafe base64 of 32 bytes'."""
    context = multiprocessing.get_context("fork")
    for round_ in range(15):
        path = tmp_path / str(round_) / "token.key"
        start, answers = context.Barrier(8), context.Queue()
        workers = [context.Process(target=_key_of_a_racing_worker, args=(path, start, answers)) for _ in range(8)]
        for worker in workers:
            worker.start()
        seen = [answers.get(timeout=30) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
        assert [kind for kind, _ in seen] == ["key"] * 8, seen
        assert {key for _, key in seen} == {base64.urlsafe_b64decode(path.read_text())}
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert sorted(p.name for p in path.parent.iterdir()) == ["token.key"]  # no drafts left behind


def test_a_non_embedded_warehouse_requires_an_explicit_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(TokenStoreError, match=KEY_ENV):
        Keyring.from_environment("postgresql://etl@db.internal:5432/analytics")
    monkeypatch.setenv(KEY_ENV, "too-short")
    with pytest.raises(TokenStoreError, match="32 bytes"):
        Keyring.from_environment("postgresql://etl@db.internal:5432/analytics")


def test_environment_token_seeds_the_store_then_the_newer_stored_token_wins(store):
    first = store.seed_from_environment("t_meta", "default", "env-token-one")
    assert first.access_token == "env-token-one"
    with store.locked("t_meta", "default") as (token, save):  # a refresh rotates the token
        save(replace(token, access_token="refreshed-token", refresh_count=token.refresh_count + 1))
    assert store.seed_from_environment("t_meta", "default", "env-token-one").access_token == "refreshed-token"
    # An operator puts a new token in the environment: it wins again.
    assert store.seed_from_environment("t_meta", "default", "env-token-two").access_token == "env-token-two"
    assert store.seed_from_environment("t_meta", "other", None) is None


def test_concurrent_refreshes_serialise_on_the_row_lock(store):
    store.put(Token("t_bw", "austin", access_token="old", refresh_token="rotating-1"))
    refreshes, errors = [], []

    def refresh() -> None:
        try:
            with store.locked("t_bw", "austin") as (token, save):
                if token.access_token != "old":
                    return  # someone refreshed while we waited: use theirs
                if token.refresh_token != "rotating-1":
                    errors.append("used a spent refresh token")
                time.sleep(0.2)  # hold the lock like a slow HTTP refresh would
                refreshes.append(1)
                save(replace(token, access_token="new", refresh_token="rotating-2", refresh_count=token.refresh_count + 1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(refreshes) == 1
    token = store.get("t_bw", "austin")
    assert (token.access_token, token.refresh_token, token.refresh_count) == ("new", "rotating-2", 1)


def test_canary_never_reaches_logs_exceptions_or_cli_output(store, conn, warehouse_url, warehouse_home, caplog):
    caplog.set_level(logging.DEBUG)
    conn.execute("DELETE FROM ops.platform_tokens")  # the CLI's exit code judges every token: only this one here
    conn.commit()
    # the CLI below judges by the pipeline's clock (the host's here: no sandbox): 3 days left there
    store.put(Token("meta", "t_canary", access_token=CANARY, expires_at=clock.now() + timedelta(days=3)))
    token = store.get("meta", "t_canary")
    logging.getLogger("adpipeline.test").warning("token in use: %s (%r)", token.access_token, token)
    try:
        raise RuntimeError(f"request failed with access_token={token.access_token}")
    except RuntimeError as exc:
        from adpipeline.http.redact import redact

        message = redact(str(exc))
    env = {**os.environ, "ADPIPELINE_WAREHOUSE_URL": warehouse_url, "ADPIPELINE_HOME": str(warehouse_home)}
    cli = subprocess.run([sys.executable, "-m", "adpipeline.cli", "-v", "tokens", "status"], capture_output=True,
                         text=True, env=env)
    cli_json = subprocess.run([sys.executable, "-m", "adpipeline.cli", "tokens", "status", "--json"],
                              capture_output=True, text=True, env=env)
    assert "t_canary" in cli.stdout and "EXPIRING_SOON" in cli.stdout
    assert cli.returncode == 1  # a token needs attention
    for text in [caplog.text, message, cli.stdout, cli.stderr, cli_json.stdout, cli_json.stderr]:
        assert CANARY not in text


@pytest.mark.parametrize(
    "days_left, expected",
    [(20, TokenHealth.HEALTHY), (14, TokenHealth.HEALTHY), (13.9, TokenHealth.WARNING), (7, TokenHealth.WARNING),
     (6.9, TokenHealth.EXPIRING_SOON), (0.01, TokenHealth.EXPIRING_SOON), (-1, TokenHealth.EXPIRED)],
)
def test_meta_token_health_follows_the_thresholds_table(days_left, expected):
    health, reason = token_health(platform="meta", status="valid", expires_at=NOW + timedelta(days=days_left),
                                  data_access_expires_at=None, never_expires=False, now=NOW)
    assert health == expected, reason
    if expected == TokenHealth.EXPIRED:
        assert "manual re-authentication required" in reason


def test_other_token_signals():
    common = dict(platform="meta", expires_at=None, now=NOW, never_expires=True)
    assert token_health(status="valid", data_access_expires_at=None, **common)[0] == TokenHealth.HEALTHY
    assert token_health(status="valid", data_access_expires_at=NOW + timedelta(days=10), **common)[0] == TokenHealth.WARNING
    assert token_health(status="valid", data_access_expires_at=NOW - timedelta(hours=1), **common)[0] == TokenHealth.EXPIRED
    assert token_health(status="refresh_failed", data_access_expires_at=None, **common)[0] == TokenHealth.WARNING
    assert token_health(status="invalid", data_access_expires_at=None, **common)[0] == TokenHealth.EXPIRED
    # Short-lived, auto-refreshed tokens (Breezeway, GA4) are not judged by lifetime.
    assert token_health(platform="breezeway", status="valid", expires_at=NOW + timedelta(hours=1),
                        data_access_expires_at=None, never_expires=False, now=NOW)[0] == TokenHealth.HEALTHY
