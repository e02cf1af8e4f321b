"""The researcher's client: submit an analysis, follow it member by member, read the result.

>>> from accord.client import Client
>>> from accord.query.scenarios import trial_recruitment
>>> client = Client.from_key_file("http://127.0.0.1:8700", "alice.key")  # doctest: +SKIP
>>> result = client.run(trial_recruitment(date(2025, 12, 31)))  # doctest: +SKIP
>>> result.total.display  # doctest: +SKIP
'1,235'
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx

from accord import protocol
from accord.analysis.glm import Family, GlmFit, GlmPart, fit
from accord.errors import ConfigError, HubError, NetworkError
from accord.privacy.disclosure import DisclosedCount, SmallCellProfile
from accord.protocol import check_hub_url
from accord.query import Analysis, GlmStep
from accord.trust.envelope import seal
from accord.trust.keys import Identity, load_identity

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl


@dataclass(frozen=True)
class MemberResult:
    member: str
    kind: str | None
    status: str
    count: DisclosedCount | None
    profile: SmallCellProfile | None
    reason: str | None
    result: dict[str, Any] | None = None
    """The member's released result as the hub accepted it (a model part, say)."""


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    status: str
    members: tuple[MemberResult, ...]
    total: DisclosedCount | None
    analysis: str = "count_persons"
    summary: dict[str, Any] = field(default_factory=dict)
    """The hub's combination of the members' results (see ``accord.hub.aggregation``)."""

    @property
    def done(self) -> bool:
        return self.status == "done"

    def frame(self) -> pd.DataFrame:
        """The result as a pandas frame, each figure with its disclosure annotations."""
        from accord.frames import frame

        return cast("pd.DataFrame", frame(self))

    def to_polars(self) -> pl.DataFrame:
        """The result as a polars frame, with the same annotation columns."""
        from accord.frames import frame

        return cast("pl.DataFrame", frame(self, kind="polars"))

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TaskResult:
        members = []
        for a in body["assignments"]:
            result = a.get("result") or {}
            members.append(
                MemberResult(
                    member=a["member"],
                    kind=a.get("kind"),
                    status=a["status"],
                    count=(
                        DisclosedCount.from_json(result["disclosed"])
                        if "disclosed" in result
                        else None
                    ),
                    profile=SmallCellProfile.from_json(result["profile"]) if result else None,
                    reason=a.get("reason"),
                    result=result or None,
                )
            )
        summary = body.get("summary") or {}
        total = summary.get("total")
        return cls(
            task_id=body["id"],
            status=body["status"],
            members=tuple(members),
            total=DisclosedCount.from_json(total) if isinstance(total, dict) else None,
            analysis=str((body.get("analysis") or {}).get("type", "count_persons")),
            summary=summary,
        )


Progress = Callable[[TaskResult], None]


class Client:
    """Talks to the hub as one researcher; every request is a signed envelope."""

    def __init__(
        self,
        hub_url: str,
        identity: Identity,
        *,
        timeout: float = 40.0,
        tls_ca: str | Path | None = None,
    ) -> None:
        """``tls_ca``: PEM certificates to trust for an HTTPS hub (default: the system's)."""
        try:
            self.hub_url = check_hub_url(hub_url)
        except ValueError as error:
            raise ConfigError(f"hub URL {hub_url!r}: {error}") from None
        self.identity = identity
        verify: ssl.SSLContext | bool = True
        if tls_ca is not None:
            try:
                verify = ssl.create_default_context(cafile=str(tls_ca))
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"cannot load the CA file {tls_ca}: {error}") from None
        self.http = httpx.Client(base_url=self.hub_url, timeout=timeout, verify=verify)
        self._hub_name: str | None = None

    @classmethod
    def from_key_file(
        cls, hub_url: str, key_file: str | Path, *, tls_ca: str | Path | None = None
    ) -> Client:
        return cls(hub_url, load_identity(Path(key_file)), tls_ca=tls_ca)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            if "CERTIFICATE_VERIFY_FAILED" in str(error):
                raise NetworkError(
                    f"the hub at {self.hub_url} presented a certificate this client does not trust",
                    hint="pass the hub's CA certificate with --tls-ca (tls_ca= in Python)",
                ) from None
            raise NetworkError(
                f"hub at {self.hub_url} is not reachable ({type(error).__name__})",
                hint="check the hub URL and that the hub is running",
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise HubError(f"hub refused the request ({response.status_code}): {detail}")
        return response.json()

    @property
    def hub_name(self) -> str:
        if self._hub_name is None:
            self._hub_name = str(self._request("GET", f"{protocol.API_PREFIX}/identity")["name"])
        return self._hub_name

    def _signed(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return seal(
            payload,
            sender=self.identity.name,
            recipient=self.hub_name,
            kind=kind,
            key=self.identity.signing_key,
        )

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", f"{protocol.API_PREFIX}/health")
        return body

    def quality(self) -> list[dict[str, Any]]:
        """Each member's latest quality-gate status: decision, counts, and per check its
        status and percentage of violating rows (the hub holds no record ids)."""
        body = self._request(
            "POST", f"{protocol.API_PREFIX}/quality", json=self._signed(protocol.QUALITY_READ, {})
        )
        members: list[dict[str, Any]] = body["members"]
        return members

    def submit(
        self,
        analysis: Analysis,
        members: list[str] | None = None,
        *,
        disclosure: str = protocol.PER_MEMBER,
    ) -> str:
        """Send ``analysis`` to the members; ``disclosure`` is ``"per_member"`` (each member
        releases its own result) or ``"secure_sum"`` (the hub learns only the total)."""
        payload = {"analysis": analysis.to_json(), "members": members, "disclosure": disclosure}
        body = self._request(
            "POST", f"{protocol.API_PREFIX}/tasks", json=self._signed(protocol.TASK_CREATE, payload)
        )
        return str(body["task_id"])

    def wait(
        self, task_id: str, *, timeout: float = 120.0, on_update: Progress | None = None
    ) -> TaskResult:
        """Follow a task until every member answered; raises HubError on timeout."""
        deadline = time.monotonic() + timeout
        seen = ""
        while True:
            remaining = deadline - time.monotonic()
            wait = max(0.0, min(20.0, remaining))
            body = self._request(
                "POST",
                f"{protocol.API_PREFIX}/tasks/{task_id}/wait",
                json=self._signed(
                    protocol.TASK_READ,
                    {"seen": seen, "wait_seconds": wait, "until_done": on_update is None},
                ),
            )
            seen = body["fingerprint"]
            result = TaskResult.from_json(body)
            if on_update is not None:
                on_update(result)
            if result.done:
                return result
            if time.monotonic() >= deadline:
                waiting = [m.member for m in result.members if m.status == "pending"]
                raise HubError(
                    f"task {task_id} did not finish within {timeout:.0f}s;"
                    f" still waiting for: {', '.join(waiting)}",
                    hint="check that those members' nodes are running",
                )

    def run(
        self,
        analysis: Analysis,
        members: list[str] | None = None,
        *,
        timeout: float = 120.0,
        on_update: Progress | None = None,
        disclosure: str = protocol.PER_MEMBER,
    ) -> TaskResult:
        task_id = self.submit(analysis, members, disclosure=disclosure)
        return self.wait(task_id, timeout=timeout, on_update=on_update)

    def fit_glm(
        self,
        model: GlmStep,
        members: list[str] | None = None,
        *,
        names: list[str] | None = None,
        timeout: float = 120.0,
        max_iter: int = 25,
        on_update: Progress | None = None,
        disclosure: str = protocol.PER_MEMBER,
    ) -> GlmFit:
        """Fit ``model`` over the members by federated Newton-Raphson; equals the pooled fit.

        Each step is one task: every member returns its part at the current coefficients
        (through its disclosure step), and the parts' sum gives the next step. A member
        that refuses a step (its disclosure rules, its quality gate) stops the fit with
        its reason, since a fit without it would not be the consortium's. With
        ``disclosure="secure_sum"`` the hub sums the members' masked parts and the step
        uses that sum alone; a member dropped from the sum stops the fit likewise.
        """

        def parts_for(beta: Any) -> list[GlmPart]:
            task = self.run(
                model.with_beta(beta),
                members,
                timeout=timeout,
                on_update=on_update,
                disclosure=disclosure,
            )
            if disclosure == protocol.SECURE_SUM:
                secure = task.summary.get("secure") or {}
                dropped = "; ".join(
                    f"{d['member']}: {d['reason']}" for d in secure.get("dropped", [])
                )
                if dropped or "part" not in secure:
                    why = dropped or secure.get("withheld") or "the hub released no total"
                    raise HubError(f"the model step was refused: {why}")
                return [GlmPart.from_json(secure["part"])]
            refused = [m for m in task.members if m.status != "done" or m.result is None]
            if refused:
                reasons = "; ".join(f"{m.member}: {m.reason}" for m in refused)
                raise HubError(f"the model step was refused: {reasons}")
            return [GlmPart.from_json(m.result["part"]) for m in task.members if m.result]

        labels = names or ["intercept", *(variable_name(v) for v in model.covariates)]
        family = cast(Family, model.family)  # validated by the query model
        return fit(parts_for, len(model.beta), family, names=labels, max_iter=max_iter)


def variable_name(variable: Any) -> str:
    """A short label for a model variable: ``age``, ``has_condition 201826``."""
    criterion = getattr(variable, "criterion", None)
    if criterion is None:
        return str(variable.TYPE)
    concepts = getattr(criterion, "concepts", None)
    ids: tuple[int, ...] = getattr(concepts, "ids", ()) or getattr(criterion, "concept_ids", ())
    return " ".join([str(criterion.TYPE), *(str(i) for i in ids[:2])])
