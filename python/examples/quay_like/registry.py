"""A Quay-shaped registry's immutability path: every decision goes through tagguard.

The operations mirror Quay's (and the engine's mock registry, host-test/src/registry.rs):
a push, tag and manifest deletes, expirations, the immutability toggle, and the
namespace and repository policy CRUD. The registry looks rows up and checks
permissions; the plugin decides; :class:`~.store.QuayStore` commits each outcome
with its audit records in one transaction.
"""

import threading
import uuid as uuidlib

import tagguard

from . import store
from .models import (
    Manifest,
    NamespaceImmutabilityPolicy,
    Repository,
    RepositoryImmutabilityPolicy,
    Tag,
    User,
    db,
    open_database,
)

PUSH_ATTEMPTS = 8
"""How many times a push is decided again when the policies or the tag changed meanwhile."""

TAG_IMMUTABLE = "TAG_IMMUTABLE"

EXAMPLE_IP = "192.0.2.10"


def user(name, ip=EXAMPLE_IP, request_id=None):
    """A user performer (the scenario runner's ``user(name)``)."""
    return tagguard.Actor("user", name, ip=ip, request_id=request_id)


class RegistryError(Exception):
    """What a registry operation fails with, besides the engine's ``tagguard.TagguardError``."""

    @property
    def kind(self):
        return type(self).__name__


class TagImmutable(RegistryError):
    """The operation touches an immutable tag: HTTP 409 with code ``TAG_IMMUTABLE``."""

    code = TAG_IMMUTABLE

    def __init__(self, operation, tag):
        super().__init__(f"{operation} of {tag} denied: the tag is immutable")
        self.operation = operation
        self.tag = tag

    @property
    def kind(self):
        return self.code


class NotFound(RegistryError):
    pass


class UnknownPolicy(RegistryError):
    def __init__(self, uuid):
        super().__init__(f"no policy {uuid}")


class Forbidden(RegistryError):
    pass


class Invalid(RegistryError):
    pass


def _engine_policy(row, namespace, repository=None):
    return tagguard.Policy(
        row.uuid,
        namespace,
        row.policy["tag_pattern"],
        repository=repository,
        tag_pattern_matches=row.policy.get("tag_pattern_matches", True),
    )


class Registry:
    """One registry database and the engine running one plugin over it.

    The models are bound to one database per process (like Quay's), so one
    ``Registry`` serves at a time; opening another rebinds them.
    """

    def __init__(self, path=":memory:", plugin=None, batch_size=500, granularity="per_tag"):
        open_database(path)
        self.store = store.QuayStore()
        self.guard = tagguard.Guard(
            plugin or tagguard.Plugin.default(),
            self.store,
            self.store,
            batch_size=batch_size,
            granularity=granularity,
        )
        # Serialises policy changes and their runs among themselves. Pushes never wait
        # for it: a push decided at an older policy version is refused at commit and
        # decided again.
        self._policy_changes = threading.Lock()

    def close(self):
        db.close()

    # --- reads ------------------------------------------------------------------

    def tag(self, namespace, repository, name):
        """The alive tag ``namespace/repository:name`` as a ``tagguard.Tag``, or None."""
        row = store.alive_tag(namespace, repository, name)
        return store.engine_tag(row) if row else None

    def _policies(self, namespace, repository=None, every_repository=False):
        """Policies of ``namespace``: its own and those of ``repository`` (or of every
        repository), in creation order."""
        rows = [
            (row.created_version, _engine_policy(row, namespace))
            for row in NamespaceImmutabilityPolicy.select()
            .join(User)
            .where(User.username == namespace)
        ]
        query = (
            RepositoryImmutabilityPolicy.select(RepositoryImmutabilityPolicy, Repository)
            .join(Repository)
            .switch(RepositoryImmutabilityPolicy)
            .join(User, on=(RepositoryImmutabilityPolicy.namespace == User.id))
            .where(User.username == namespace)
        )
        if not every_repository:
            query = query.where(Repository.name == repository)
        rows += [
            (row.created_version, _engine_policy(row, namespace, row.repository.name))
            for row in query
        ]
        return [policy for _, policy in sorted(rows, key=lambda r: r[0])]

    def policies_in_scope(self, namespace, repository):
        """Every policy that applies to ``namespace/repository``."""
        return self._policies(namespace, repository)

    def namespace_policies(self, namespace):
        """Every policy of ``namespace``, at both levels (what a new policy is validated against)."""
        return self._policies(namespace, every_repository=True)

    def policy(self, uuid):
        row = store.stored_policy(uuid)
        if row is None:
            raise UnknownPolicy(uuid)
        if isinstance(row, RepositoryImmutabilityPolicy):
            return _engine_policy(row, row.namespace.username, row.repository.name)
        return _engine_policy(row, row.namespace.username)

    # --- tags ---------------------------------------------------------------------

    def push(self, actor, namespace, repository, tag, digest):
        """Creates ``tag`` on ``digest``, or moves it there. Returns whether the tag is
        immutable now; raises :class:`TagImmutable` if it was immutable already."""
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            with db.atomic("DEFERRED"):  # one snapshot: the policies, their version, the tag
                policies = self.policies_in_scope(namespace, repository)
                version = store.policy_version()
                existing = self.tag(namespace, repository, tag)
            try:
                outcome = self.guard.push(
                    actor,
                    namespace,
                    repository,
                    tag,
                    digest,
                    existing=existing,
                    policies=policies,
                    policy_version=version,
                )
            except tagguard.ConflictError:
                if attempt == PUSH_ATTEMPTS:
                    raise
                continue  # a policy change or another push committed meanwhile
            if outcome.denied:
                raise TagImmutable("push", tag)
            return outcome.immutable

    def _existing(self, namespace, repository, name):
        tag = self.tag(namespace, repository, name)
        if tag is None:
            raise NotFound(f"tag {namespace}/{repository}:{name}")
        return tag

    def _decide_removal(self, actor, tags, action, label, expires_at=None):
        first = tags[0]
        outcome = self.guard.delete(
            actor,
            tags,
            self.policies_in_scope(first.namespace, first.repository),
            action=action,
            expires_at=expires_at,
        )
        if not outcome.allowed:
            names = [t.name for t in tags if t.id in outcome.blocking]
            raise TagImmutable(label, ",".join(names))

    def delete_tag(self, actor, namespace, repository, tag):
        tags = [self._existing(namespace, repository, tag)]
        self._decide_removal(actor, tags, "delete_tags", "delete")

    def delete_manifest(self, actor, namespace, repository, digest):
        """Deletes a manifest by digest with every alive tag on it (what ``skopeo delete`` does)."""
        rows = (
            store.alive_tags()
            .where(
                User.username == namespace,
                Repository.name == repository,
                Manifest.digest == digest,
            )
            .order_by(Tag.id)
        )
        tags = [store.engine_tag(row) for row in rows]
        if not tags:
            raise NotFound(f"manifest {digest} in {namespace}/{repository}")
        self._decide_removal(actor, tags, "delete_manifest", "delete_manifest")

    def set_expiration(self, actor, namespace, repository, tag, expires_at):
        tags = [self._existing(namespace, repository, tag)]
        self._decide_removal(actor, tags, "set_expiration", "set_expiration", expires_at)

    def set_immutable(self, actor, admin, namespace, repository, tag, immutable):
        """Quay's tag toggle: write permission may set it; clearing needs an admin.
        Returns whether the state changed."""
        if not immutable and not admin:
            raise Forbidden("clearing a tag's immutability needs an admin")
        existing = self._existing(namespace, repository, tag)
        return self.guard.manual_change(actor, existing, immutable)

    # --- policies -------------------------------------------------------------------

    def create_policy(self, actor, namespace, pattern, *, repository=None, matches=True, uuid=None):
        """Stores a policy and applies it to the existing tags (a retroactive run)."""
        with self._policy_changes:
            uuid = uuid or str(uuidlib.uuid4())
            existing = self.namespace_policies(namespace)
            if any(p.uuid == uuid for p in existing) or store.stored_policy(uuid):
                raise Invalid(f"uuid: policy {uuid} already exists")
            candidate = tagguard.Policy(
                uuid, namespace, pattern, repository=repository, tag_pattern_matches=matches
            )
            return self.guard.create_policy(actor, candidate, existing)

    def update_policy(self, actor, uuid, pattern, matches=True):
        """Changes a policy's pattern and polarity and applies it to the existing tags."""
        with self._policy_changes:
            before = self.policy(uuid)
            candidate = tagguard.Policy(
                uuid,
                before.namespace,
                pattern,
                repository=before.repository,
                tag_pattern_matches=matches,
            )
            existing = self.namespace_policies(before.namespace)
            return self.guard.update_policy(actor, before, candidate, existing)

    def reapply_policy(self, actor, uuid):
        """Runs a stored policy over the existing tags again (after a run that stopped)."""
        with self._policy_changes:
            return self.guard.apply_policy(actor, self.policy(uuid), "reapplied")

    def delete_policy(self, actor, uuid):
        """Deletes a policy. Tags it made immutable stay immutable."""
        with self._policy_changes:
            self.guard.delete_policy(actor, self.policy(uuid))

    # --- questions ---------------------------------------------------------------------

    def explain(self, namespace, repository, tag):
        """Which policies in scope fire for a tag name (nothing is written)."""
        return self.guard.explain(tag, self.policies_in_scope(namespace, repository))

    def logs(self):
        """The audit log, oldest first (see :func:`.store.logs`)."""
        return store.logs()

    def history(self, namespace, repository, tag):
        """Why ``namespace/repository:tag`` is (or is not) immutable: every record about it,
        oldest first, and the last change of its immutability (the engine's ``tag_history``)."""
        events = [
            _event(row)
            for row in self.logs()
            if row["kind"] in ABOUT_TAGS
            and row["namespace"] == namespace
            and names_tag(row, repository, tag)
        ]
        cause = next((e for e in reversed(events) if e["kind"] in CHANGES), None)
        return {"events": events, "cause": cause}

    def check_invariants(self):
        """The tables agree with the log: every immutable tag has the record of its change,
        every run summary counts the records of its run, no immutable tag was removed.
        Returns the problems found."""
        rows = self.logs()
        problems = []
        for tag in store.alive_tags().where(Tag.immutable == True):  # noqa: E712
            ns, repo = tag.repository.namespace_user.username, tag.repository.name
            changes = [
                r
                for r in rows
                if r["kind"] in CHANGES and r["namespace"] == ns and names_tag(r, repo, tag.name)
            ]
            if not changes or changes[-1]["metadata"].get("immutable") is not True:
                problems.append(f"{ns}/{repo}:{tag.name} is immutable with no record of the change")
        removed = Tag.select().where(
            Tag.immutable == True, Tag.lifetime_end_ms.is_null(False)  # noqa: E712
        )
        problems += [f"tag id {t.id} ({t.name}) was removed while immutable" for t in removed]
        per_run = {}
        for r in rows:
            run = r["metadata"].get("run_id")
            if r["kind"] == "tag_made_immutable_by_policy" and run:
                listed = r["metadata"].get("tags")
                per_run[run] = per_run.get(run, 0) + (len(listed) if r["tag"] is None else 1)
        for r in rows:
            if r["kind"] == "tags_made_immutable_by_policy":
                run = r["metadata"].get("run_id")
                if r["metadata"].get("count") != per_run.get(run, 0):
                    problems.append(
                        f"summary {r['id']} of run {run} claims {r['metadata'].get('count')} "
                        f"tags, the log has {per_run.get(run, 0)}"
                    )
        return problems


CHANGES = ("tag_made_immutable_by_policy", "change_tag_immutability")
ABOUT_TAGS = CHANGES + ("tag_immutability_denied",)


def names_tag(row, repository, tag):
    """Whether a log row is about ``repository:tag``: its own tag, or a tag its per-batch list names."""
    if row["repository"] == repository and row["tag"] == tag:
        return True
    listed = row["metadata"].get("tags") if row["tag"] is None else None
    return any(t.get("repository") == repository and t.get("tag") == tag for t in listed or [])


def _text(meta, key):
    value = meta.get(key)
    return value if isinstance(value, str) else None


def _event(row):
    meta = row["metadata"]
    return {
        "seq": row["id"],
        "time": row["datetime"],
        "kind": row["kind"],
        "performer": row["performer"],
        "trigger": _text(meta, "trigger") or _text(meta, "operation"),
        "immutable": meta.get("immutable") if row["kind"] in CHANGES else None,
        "policy_uuid": _text(meta, "policy_uuid"),
        "policy_pattern": _text(meta, "policy_pattern"),
        "run_id": _text(meta, "run_id"),
        "outcome": _text(meta, "outcome"),
        "plugin": f"{meta.get('plugin_name')}@{meta.get('plugin_version')}",
        "plugin_digest": meta.get("plugin_digest"),
    }
