"""Examples and links of the OpenAPI document (``openapi``). Each example is checked by a
unit test: it decodes strictly into the Struct it illustrates (bodies' own checks included).

Links (OpenAPI ``links``) say how a grant's answer feeds the next request: acquire, then
renew, verify or release with the answer's ``holder`` and ``token`` (schemathesis follows
them in its stateful phase).
"""

from __future__ import annotations

from typing import Any

_LEASE = {"name": "jobs/nightly", "holder": "worker-1", "token": 42, "revision": 42,
          "ttl": 10.0, "expires_in": 9.98, "value": "10.0.0.7:8080", "lock_delay": 0.0,
          "session": None, "waiters": 0}  # fmt: skip
_LEADER = {"name": "db/primary", "leader": "db-1", "value": "10.0.0.7:5432", "token": 57,
           "revision": 57, "ttl": 10.0, "expires_in": 9.98, "session": None,
           "waiters": 1}  # fmt: skip
_SESSION = {"id": "s73", "holder": "worker-1", "ttl": 30.0, "token": 73, "revision": 73,
            "expires_in": 29.9}  # fmt: skip
_MEMBER = {"group": "workers", "member": "worker-1", "capabilities": "eyJjcHUiOiA0fQ==",
           "session": "s73", "token": 80, "revision": 80}  # fmt: skip
_SEMAPHORE = {"name": "db/connections", "revision": 90, "blocked": 0, "limit": 5,
              "holders": [{"holder": "worker-1", "token": 90, "expires_in": 9.9,
                           "session": None}]}  # fmt: skip
_RWLOCK = {"name": "config", "revision": 95, "blocked": 0,
           "holders": [{"holder": "reader-1", "token": 95, "expires_in": 9.9,
                        "session": None, "mode": "read"}]}  # fmt: skip
_GRANT = {"holder": "worker-1", "token": 90, "revision": 90, "ttl": 10.0, "expires_in": 10.0,
          "session": None, "lock_delay": 0.0}  # fmt: skip
_CONFIG_MEMBER = {"id": "n1", "incarnation": "4f0c2a", "url": "http://10.0.0.1:7001"}

EXAMPLES: dict[str, dict[str, Any]] = {
    # request bodies
    "AcquireBody": {"holder": "worker-1", "ttl": 10, "value": "10.0.0.7:8080"},
    "RenewBody": {"holder": "worker-1", "token": 42},
    "ReleaseBody": {"holder": "worker-1", "token": 42, "request_id": "release-42"},
    "VerifyBody": {"token": 42},
    "CampaignBody": {"candidate": "db-1", "ttl": 10, "value": "10.0.0.7:5432", "wait": 5},
    "ProclaimBody": {"candidate": "db-1", "token": 57, "value": "10.0.0.8:5432"},
    "ElectionRenewBody": {"candidate": "db-1", "token": 57},
    "ResignBody": {"candidate": "db-1", "token": 57},
    "OpenSessionBody": {"holder": "worker-1", "ttl": 30},
    "SessionHolderBody": {"holder": "worker-1", "token": 73},
    "SemaphoreAcquireBody": {"holder": "worker-1", "limit": 5, "ttl": 10},
    "RwlockAcquireBody": {"holder": "reader-1", "mode": "read", "session": "s73"},
    "GroupBody": {"holder": "admin-1"},
    "JoinBody": {"session": "s73", "capabilities": "eyJjcHUiOiA0fQ=="},
    "LeaveBody": {"holder": "worker-1"},
    "CapabilitiesBody": {"capabilities": "eyJjcHUiOiA4fQ=="},
    "AddMemberBody": {"id": "n4", "url": "http://10.0.0.4:7001"},
    # answers
    "Lease": _LEASE,
    "Leader": _LEADER,
    "LeaseList": {"leases": [_LEASE]},
    "LeaderList": {"elections": [_LEADER]},
    "Released": {"released": True},
    "Verified": {"current": True, "token": 42},
    "Cluster": {
        "node": "n2", "role": "voter", "primary": "n1", "ballot": None, "learn_mode": "push",
        "chosen_index": 1200, "applied_index": 1200, "revision": 1187,
        "primary_changes": [{"at": 1764655200.25, "primary": None, "ballot": None},
                            {"at": 1764655201.5, "primary": "n1", "ballot": "3.n1"}],
        "members": [{"id": "n1", "url": "http://10.0.0.1:7001", "reachable": True,
                     "chosen_index": 1200, "lag": 0, "heard_s_ago": 0.05,
                     "heard_via": None}],
    },
    "Changes": {"revision": 1188},
    "Health": {"status": "ok", "node": "n1"},
    "Ready": {"ready": True, "reason": "following n1"},
    "Membership": {
        "cluster_id": "c9e1d3", "epoch": 1, "pending": None,
        "members": [{**_CONFIG_MEMBER, "role": "voter", "primary": True, "reachable": True,
                     "chosen_index": 1200, "lag": 0}],
    },
    "Configuration": {"epoch": 2, "voters": [_CONFIG_MEMBER],
                      "learners": [{"id": "n4", "incarnation": "77ab01",
                                    "url": "http://10.0.0.4:7001"}]},
    "Session": {**_SESSION, "holds": [{"kind": "lease", "name": "jobs/nightly",
                                       "holder": "worker-1", "token": 74}]},
    "SessionList": {"sessions": [_SESSION]},
    "SessionClosed": {"closed": True, "freed": [{"kind": "lease", "name": "jobs/nightly",
                                                 "holder": "worker-1", "token": 74}]},
    "Permit": {"name": "db/connections", **_GRANT, "holders": ["worker-1"], "limit": 5},
    "RwHold": {"name": "config", **_GRANT, "holders": ["worker-1"], "mode": "write"},
    "Semaphore": _SEMAPHORE,
    "Rwlock": _RWLOCK,
    "SemaphoreList": {"semaphores": [_SEMAPHORE]},
    "RwlockList": {"rwlocks": [_RWLOCK]},
    "Group": {"name": "workers", "revision": 80, "members": [_MEMBER]},
    "GroupMember": _MEMBER,
    "GroupList": {"groups": ["workers"]},
    "GroupMembers": {"members": [_MEMBER], "revision": 80},
    "GroupChanges": {"group": "workers", "revision": 81, "complete": True,
                     "events": [{"type": "left", "member": "worker-2", "revision": 81}],
                     "members": [_MEMBER]},
    "Deleted": {"deleted": True},
    "Left": {"left": True},
    "Error": {"error": "held", "message": "jobs/nightly is held by worker-1",
              "holder": "worker-1", "expires_in": 7.5},
}  # fmt: skip
"""By schema name (a Struct's name)."""


def _grant_links(prefix: str, who: str, verbs: tuple[str, ...], get: str,
                 name: str = "name") -> dict[str, Any]:  # fmt: skip
    """Links from a grant's answer to the requests that use its holder and token."""
    body = {who: f"$response.body#/{'leader' if who == 'candidate' else 'holder'}",
            "token": "$response.body#/token"}  # fmt: skip
    out: dict[str, Any] = {
        verb: {"operationId": f"post{prefix}{verb.capitalize()}",
               "parameters": {name: f"$request.path.{name}"}, "requestBody": body}
        for verb in verbs
    }  # fmt: skip
    out["get"] = {"operationId": get, "parameters": {name: f"$request.path.{name}"}}
    return out


def _proclaim_too(links: dict[str, Any]) -> dict[str, Any]:
    """A proclaim's body needs a ``value`` too: the leader's own."""
    links["proclaim"]["requestBody"] = {**links["proclaim"]["requestBody"],
                                        "value": "$response.body#/value"}  # fmt: skip
    return links


LINKS: dict[str, dict[str, Any]] = {
    "POST /v1/leases/{name}:acquire": {
        **_grant_links("Lease", "holder", ("renew", "release"), "getLease"),
        "verify": {"operationId": "postLeaseVerify", "parameters": {"name": "$request.path.name"},
                   "requestBody": {"token": "$response.body#/token"}},
    },
    "POST /v1/elections/{name}:campaign": _proclaim_too(_grant_links(
        "Election", "candidate", ("renew", "proclaim", "resign"), "getElection")),
    "POST /v1/semaphores/{name}:acquire": _grant_links(
        "Semaphore", "holder", ("renew", "release"), "getSemaphore"),
    "POST /v1/rwlocks/{name}:acquire": _grant_links(
        "Rwlock", "holder", ("renew", "release"), "getRwlock"),
    "POST /v1/sessions": {
        verb: {"operationId": f"postSession{verb.capitalize()}",
               "parameters": {"id": "$response.body#/id"},
               "requestBody": {"holder": "$response.body#/holder",
                               "token": "$response.body#/token"}}
        for verb in ("renew", "close")
    } | {"get": {"operationId": "getSession", "parameters": {"id": "$response.body#/id"}}},
    "PUT /v1/groups/{group}": {
        verb: {"operationId": operation, "parameters": {"group": "$request.path.group"}}
        for verb, operation in (("get", "getGroup"), ("delete", "deleteGroup"),
                                ("join", "postGroupMemberJoin"),
                                ("campaign", "postGroupLeaderCampaign"))
    },
    "POST /v1/groups/{group}/members/{member}:join": {
        verb: {"operationId": operation, "parameters": {"group": "$request.path.group",
                                                        "member": "$request.path.member"}}
        for verb, operation in (("get", "getGroupMember"), ("update", "patchGroupMember"),
                                ("leave", "postGroupMemberLeave"))
    },
    "POST /v1/groups/{group}/leader:campaign": _proclaim_too(_grant_links(
        "GroupLeader", "candidate", ("renew", "proclaim", "resign"), "getGroupLeader",
        name="group")),
}  # fmt: skip
"""Links by operation (``METHOD path``), on its success answer."""
