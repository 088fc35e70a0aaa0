"""The Breezeway API client for one region, on the shared `ApiClient`.

What Breezeway does differently from the defaults: `Authorization: JWT <token>` on every data call; a 401
means the token was refused (expired, rotated elsewhere), so the client gets a newer token and retries
ONCE; an HTML 403 comes from the proxy in front of the API when a client has too many requests in flight
(back off like a transient error; JSON 403s stay permission errors); lists are paged envelopes or bare
arrays; pages of an enveloped list are fetched with at most `max_concurrency` requests in flight.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import requests

from adpipeline.http import ApiClient, ApiError, ErrorKind, PageNumberPaging, RequestSpec
from adpipeline.sources.breezeway.auth import BreezewayAuth

INVENTORY = "/public/inventory/v1"
PAGING = PageNumberPaging()
PEOPLE_STATUSES = ("active", "invited", "inactive")
T = TypeVar("T")
R = TypeVar("R")
_END = object()


def _is_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    return "html" in content_type or response.text.lstrip()[:15].lower().startswith(("<html", "<!doctype"))


class BreezewayClient(ApiClient):
    source = "breezeway"

    def __init__(self, base_url: str, region: str, *, page_size: int = 100, max_concurrency: int = 4,
                 **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.region = region
        self.page_size = page_size
        self.max_concurrency = max(1, max_concurrency)
        self.auth: BreezewayAuth | None = None  # set by whoever builds the client (see resources.py)
        self.reauthentications = 0
        self._local = threading.local()

    # ---- ApiClient hooks -----------------------------------------------------------------------

    def prepare(self, spec: RequestSpec) -> RequestSpec:
        if spec.url.startswith("/public/auth/"):
            return spec  # the auth endpoints carry their own credentials
        if self.auth is None:
            raise RuntimeError("BreezewayClient.auth is not set")
        token = self.auth.access_token()
        self._local.token = token
        return spec.replace(headers={**(spec.headers or {}), "Authorization": f"JWT {token}"})

    def classify(self, response: requests.Response) -> ApiError | None:
        error = super().classify(response)
        if error is not None and response.status_code == 403 and _is_html(response):
            return ApiError(ErrorKind.TRANSIENT, "the API's proxy refused the request with an HTML 403 page "
                            "(too many concurrent requests)", status=403)
        return error

    def token_rejected(self, spec: RequestSpec) -> bool:
        """A 401 on a data call: get a newer token (refresh/regenerate) and retry once (the shared client does)."""
        if spec.url.startswith("/public/auth/") or self.auth is None:
            return False  # an auth endpoint's own refusal (bad credentials...) is final
        if self.auth.final_401(getattr(self._local, "token", None)):
            return False  # a fresh token refused (here or in another thread): no renewal helps
        self.auth.rejected(getattr(self._local, "token", None))
        self.reauthentications += 1
        return True

    def auth_refused(self, spec: RequestSpec, error: ApiError) -> None:
        if error.status == 401 and self.auth is not None and not spec.url.startswith("/public/auth/"):
            # a 401 after a new token too: no refresh fixes it; the store says so at once
            self.auth.refused(getattr(self._local, "token", None), error)

    # ---- calls ---------------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None, *, entity: str) -> Any:
        return self.send(RequestSpec("GET", path, params), scope=f"{self.region}/{entity}")

    def rows(self, path: str, params: dict[str, Any] | None = None, *, entity: str,
             concurrent: bool = True) -> Iterator[dict[str, Any]]:
        """Every row of a list, page by page (a bare array is the whole list). Pages after the first are
        fetched concurrently (bounded) when the envelope says how many there are; yielded in order."""
        scope = f"{self.region}/{entity}"
        first = RequestSpec("GET", path, {**(params or {}), "limit": self.page_size, "page": 1})
        payload = self.send(first, scope=scope)
        yield from PAGING.rows(payload)
        following = PAGING.next_request(first, payload)
        if following is None:
            return
        total_pages = payload.get("total_pages") if isinstance(payload, dict) else None
        if total_pages is None or self.max_concurrency == 1 or not concurrent:
            for page in self.paginate(following, PAGING, scope=scope):
                yield from PAGING.rows(page)
            return
        yield from self._concurrent_pages(following, int(total_pages), scope)

    def _concurrent_pages(self, second: RequestSpec, total_pages: int, scope: str) -> Iterator[dict[str, Any]]:
        params = dict(second.params or {})
        pages = range(int(params["page"]), total_pages + 1)
        for payload in self.bounded_map(lambda p: self.send(second.replace(params={**params, "page": p}), scope=scope),
                                        pages):
            yield from PAGING.rows(payload)

    def bounded_map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """fn over items with at most `max_concurrency` calls in flight; results in input order, streamed."""
        todo = iter(items)
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix=f"breezeway-{self.region}") as pool:
            window: deque[Future[R]] = deque()

            def submit() -> None:
                item = next(todo, _END)
                if item is not _END:
                    window.append(pool.submit(fn, item))

            for _ in range(self.max_concurrency):
                submit()
            try:
                while window:
                    result = window.popleft().result()
                    submit()
                    yield result
            finally:
                for future in window:
                    future.cancel()

    def properties(self) -> Iterator[dict[str, Any]]:
        return self.rows(f"{INVENTORY}/property", entity="properties")

    def property(self, property_id: int) -> dict[str, Any] | None:
        """One property, or None when the API does not know it (404)."""
        try:
            return self.get(f"{INVENTORY}/property/{property_id}", entity="properties")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def reservations(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Reservations matching explicit filters. Callers always pass a date filter: without one the
        API silently returns only stays with checkout_date >= today."""
        if not any(k.startswith(("checkin_date_", "checkout_date_", "created_at_", "updated_at_")) for k in params):
            raise ValueError("reservation listings need an explicit date filter (the API's default hides past stays)")
        return self.rows(f"{INVENTORY}/reservation", params, entity="reservations")

    def tasks_by_property(self, property_ids: Iterable[int], params: dict[str, Any]
                          ) -> Iterator[tuple[int, list[dict[str, Any]] | ApiError | None]]:
        """Each property's tasks (the API only lists tasks per property: one call each, the only
        per-property cost), several properties in flight. Per property: its rows; None when the API no
        longer has the property (404); or the ApiError that made it fail (auth errors are raised)."""

        def fetch(property_id: int) -> tuple[int, list[dict[str, Any]] | ApiError | None]:
            try:
                return property_id, list(self.rows(f"{INVENTORY}/task/", {"home_id": property_id, **params},
                                                   entity="tasks", concurrent=False))
            except ApiError as exc:
                if exc.kind is ErrorKind.AUTH:
                    raise
                return property_id, None if exc.status == 404 else exc

        return self.bounded_map(fetch, property_ids)

    def people(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(status, person) for every status: the listing without one returns only active people."""
        for status in PEOPLE_STATUSES:
            for row in self.rows(f"{INVENTORY}/people", {"status": status}, entity="people"):
                yield status, row

    def supplies(self) -> Iterator[dict[str, Any]]:
        return self.rows(f"{INVENTORY}/supplies", entity="supplies")

    def tags(self) -> Iterator[dict[str, Any]]:
        return self.rows(f"{INVENTORY}/task/tags", entity="tags")

    def api_calls_by_entity(self) -> dict[str, int]:
        return {str(scope).split("/", 1)[-1]: n for scope, n in self.calls_by_scope.items() if scope}
