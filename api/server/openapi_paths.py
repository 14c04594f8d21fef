"""Every operation of the HTTP API for the OpenAPI document (``openapi``): its body and
answer types (the Structs the server decodes with and the ``responses`` Structs), the query
parameters it reads, the errors it can answer. Keyed by ``METHOD path`` as the document
spells it; a unit test checks these against the app's router and dispatch tables, both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from paxlock.api.server import coord_wire, responses as r, wire
from paxlock.api.server.members import AddMemberBody

ANY = (400, 401, 403, 429, 503)
"""What every ``/v1`` route can answer: a bad name or query (400), ``--auth`` (401, 403),
a limit (429), no primary or no quorum (503)."""
NAMED = (*ANY, 404)
CHANGE = (*NAMED, 409, 413)
"""A change with a body: refused by the state (409: held, not_holder, request_expired,
exists, ...), body over 1 MiB (413)."""


@dataclass(frozen=True, slots=True)
class Op:
    summary: str
    tag: str
    ok: type[msgspec.Struct] | None
    errors: tuple[int, ...]
    body: type[msgspec.Struct] | None = None
    body_optional: bool = False
    status: int = 200
    query: tuple[str, ...] = ()
    idempotent: bool = False
    """Takes a ``request_id`` (body) or the ``Idempotency-Key`` header."""
    stream: str | None = None
    """Answers ``text/event-stream`` to ``Accept: text/event-stream``: what each event is."""
    long_poll: bool = False
    """Answers 204 when ``timeout`` passes with no change."""
    description: str = ""


def _shared(kind: str, grant: type[msgspec.Struct], body: type[msgspec.Struct],
            view: type[msgspec.Struct], listing: type[msgspec.Struct]) -> dict[str, Op]:  # fmt: skip
    base = f"/v1/{kind}s/{{name}}"
    return {
        f"POST {base}:acquire": Op(f"Acquire a {kind} hold (waits up to `wait` seconds)", kind,
                                   grant, CHANGE, body, idempotent=True),  # fmt: skip
        f"POST {base}:renew": Op(f"Renew a {kind} hold", kind, grant, CHANGE, wire.RenewBody),
        f"POST {base}:release": Op(f"Release a {kind} hold", kind, r.Released, CHANGE,
                                   wire.ReleaseBody, idempotent=True),  # fmt: skip
        f"POST {base}:verify": Op(f"Whether a token is a current {kind} hold", kind,
                                  r.Verified, (*NAMED, 413), wire.VerifyBody),  # fmt: skip
        f"GET {base}": Op(f"Read a {kind} and its holders", kind, view, NAMED,
                          query=("consistent",)),  # fmt: skip
        f"GET /v1/{kind}s": Op(f"List the held {kind}s", kind, listing, ANY,
                               query=("prefix", "consistent")),  # fmt: skip
    }


_LEADER = "/v1/groups/{group}/leader"

OPERATIONS: dict[str, Op] = {
    # -- leases
    "POST /v1/leases/{name}:acquire": Op(
        "Acquire a lease (waits up to `wait` seconds while it is held)", "leases", r.Lease,
        CHANGE, wire.AcquireBody, idempotent=True,
        description="The fencing token is the answer's `token`. 409 `held` names the "
        "holder and `expires_in`; 429 when too many acquires wait for the name."),
    "POST /v1/leases/{name}:renew": Op("Renew a lease", "leases", r.Lease, CHANGE,
                                       wire.RenewBody),
    "POST /v1/leases/{name}:release": Op("Release a lease", "leases", r.Released, CHANGE,
                                         wire.ReleaseBody, idempotent=True),
    "POST /v1/leases/{name}:verify": Op(
        "Whether a fencing token is the current grant", "leases", r.Verified, (*NAMED, 413),
        wire.VerifyBody),
    "GET /v1/leases/{name}": Op("Read a lease", "leases", r.Lease, NAMED,
                                query=("consistent",)),
    "GET /v1/leases": Op("List the held leases", "leases", r.LeaseList, ANY,
                         query=("prefix", "consistent")),
    # -- elections
    "POST /v1/elections/{name}:campaign": Op(
        "Campaign: become leader (waits up to `wait` seconds)", "elections", r.Leader,
        CHANGE, wire.CampaignBody, idempotent=True),
    "POST /v1/elections/{name}:proclaim": Op("Change the leader's value", "elections",
                                             r.Leader, CHANGE, wire.ProclaimBody,
                                             idempotent=True),
    "POST /v1/elections/{name}:renew": Op("Renew leadership", "elections", r.Leader, CHANGE,
                                          wire.ElectionRenewBody),
    "POST /v1/elections/{name}:resign": Op("Resign leadership", "elections", r.Released,
                                           CHANGE, wire.ResignBody, idempotent=True),
    "GET /v1/elections/{name}": Op("Read the leader", "elections", r.Leader, NAMED,
                                   query=("consistent",)),
    "GET /v1/elections/{name}:observe": Op(
        "Wait for the next change of an election", "elections", r.Leader, NAMED,
        query=("after", "timeout"), stream="a leader object per change (`id`: its "
        "revision; `event: error` then the end on a failure)", long_poll=True,
        description="Long poll: 200 with the leader once its revision passes `after`, 204 "
        "when `timeout` passes first. With `Accept: text/event-stream`: every change as an "
        "event, keepalive comments, `Last-Event-ID` resumes."),
    "GET /v1/elections": Op("List the held names as leaders", "elections", r.LeaderList, ANY,
                            query=("prefix", "consistent"),
                            description="Leases and elections share one namespace."),
    # -- sessions
    "POST /v1/sessions": Op("Open a session", "sessions", r.Session, (*ANY, 409, 413),
                            coord_wire.OpenSessionBody, idempotent=True),
    "POST /v1/sessions/{id}:renew": Op("Renew a session", "sessions", r.Session, CHANGE,
                                       coord_wire.SessionHolderBody),
    "POST /v1/sessions/{id}:close": Op("Close a session, freeing its holds", "sessions",
                                       r.SessionClosed, CHANGE, coord_wire.SessionHolderBody,
                                       idempotent=True),
    "GET /v1/sessions/{id}": Op("Read a session and its holds", "sessions", r.Session, NAMED,
                                query=("consistent",)),
    "GET /v1/sessions": Op("List sessions", "sessions", r.SessionList, ANY,
                           query=("holder", "consistent")),
    # -- semaphores and read/write locks
    **_shared("semaphore", r.Permit, coord_wire.SemaphoreAcquireBody, r.Semaphore,
              r.SemaphoreList),
    **_shared("rwlock", r.RwHold, coord_wire.RwlockAcquireBody, r.Rwlock, r.RwlockList),
    # -- groups
    "GET /v1/groups": Op("List groups", "groups", r.GroupList, ANY,
                         query=("prefix", "consistent")),
    "GET /v1/groups/{group}": Op("Read a group", "groups", r.Group, NAMED,
                                 query=("consistent",)),
    "PUT /v1/groups/{group}": Op("Create a group", "groups", r.Group, CHANGE,
                                 coord_wire.GroupBody, body_optional=True, status=201,
                                 idempotent=True),
    "DELETE /v1/groups/{group}": Op("Delete an empty group", "groups", r.Deleted, CHANGE,
                                    coord_wire.GroupBody, body_optional=True,
                                    idempotent=True),
    "GET /v1/groups/{group}:observe": Op(
        "Wait for the next changes of a group", "groups", r.GroupChanges, NAMED,
        query=("after", "timeout"), stream="one event per change (`{group, type, member, "
        "revision}`), an `event: resync` with the members when this node cannot give every "
        "change since `after`", long_poll=True),
    "GET /v1/groups/{group}/members": Op("List a group's members", "groups", r.GroupMembers,
                                         NAMED, query=("consistent",)),
    "GET /v1/groups/{group}/members/{member}": Op("Read a member", "groups", r.GroupMember,
                                                  NAMED, query=("consistent",)),
    "PATCH /v1/groups/{group}/members/{member}": Op(
        "Update a member's capabilities", "groups", r.GroupMember, CHANGE,
        coord_wire.CapabilitiesBody, idempotent=True),
    "POST /v1/groups/{group}/members/{member}:join": Op(
        "Join a group (bound to a session)", "groups", r.GroupMember, CHANGE,
        coord_wire.JoinBody, idempotent=True),
    "POST /v1/groups/{group}/members/{member}:leave": Op(
        "Leave a group", "groups", r.Left, CHANGE, coord_wire.LeaveBody, body_optional=True,
        idempotent=True),
    f"GET {_LEADER}": Op("Read the group's leader", "groups", r.Leader, NAMED,
                         query=("consistent",)),
    f"POST {_LEADER}:campaign": Op("Campaign for the group's leadership", "groups",
                                   r.Leader, CHANGE, wire.CampaignBody, idempotent=True),
    f"POST {_LEADER}:renew": Op("Renew the group's leadership", "groups", r.Leader, CHANGE,
                                wire.ElectionRenewBody),
    f"POST {_LEADER}:proclaim": Op("Change the group leader's value", "groups", r.Leader,
                                   CHANGE, wire.ProclaimBody, idempotent=True),
    f"POST {_LEADER}:resign": Op("Resign the group's leadership", "groups", r.Released,
                                 CHANGE, wire.ResignBody, idempotent=True),
    # -- membership
    "GET /v1/members": Op("The configuration as this node knows it", "cluster",
                          r.Membership, (401, 403, 429)),
    "POST /v1/members": Op(
        "Add a member as a learner (needs admin)", "cluster", r.Configuration,
        (*ANY, 409, 413), AddMemberBody, status=201,
        description="Asks the new member who it is first: 503 while it cannot be reached."),
    "POST /v1/members/{id}:promote": Op("Promote a learner to voter (needs admin)",
                                        "cluster", r.Configuration, (*NAMED, 409)),
    "DELETE /v1/members/{id}": Op("Remove a member (needs admin)", "cluster",
                                  r.Configuration, (*NAMED, 409)),
    # -- the cluster and operation
    "GET /v1/cluster": Op("This node's view of the cluster", "cluster", r.Cluster,
                          (401, 429)),
    "GET /v1/changes": Op(
        "Wait for any change in the cluster", "cluster", r.Changes, (400, 401, 429),
        query=("after", "timeout"), stream="`{\"revision\": N}` per change (changes close "
        "together may coalesce to the latest)", long_poll=True,
        description="From this node's applied log (no forwarding): 200 once its applied "
        "revision passes `after`, 204 when `timeout` passes first. Every change counts: "
        "leases, elections, sessions, permits, read/write locks, groups, expiries."),
    "GET /v1/openapi.json": Op("This document (no token needed)", "cluster", None, (429,)),
    "GET /healthz": Op("Liveness: the process answers", "operation", r.Health, ()),
    "GET /readyz": Op("Readiness: a primary is known and this node keeps up", "operation",
                      r.Ready, (503,)),
    "GET /metrics": Op("Prometheus metrics (text format)", "operation", None, (401,)),
}  # fmt: skip
"""Every public route (``/internal/`` is the members' own)."""
