"""The lifecycle phase: move each planned contact to its target stage, and make sure it moved.

HubSpot does not move a lifecycle stage backwards with a plain write, and has been seen to answer
2xx to one and change nothing. So a backward move (or one whose place in the order is unknown) is
a clear then a set, and every move is checked: HubSpot's batch update answers with each updated
contact as it now is, so the set's own answer tells whether the stage stuck, and a contact is read
back only when that answer leaves its stage out. The set carries the markers and the property
nurtures in the same batch update. Three rules hold whatever HubSpot answers:

- a contact whose write HubSpot refused fails alone; the others go on;
- a stage that did not stick is cleared and set once more, then reported;
- a clear that went through is never left blank: when the set after it is refused, the stage
  alone is tried, then the stage read before the handoff is written back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from handoff_worker.domain.models import ObjectType
from handoff_worker.domain.rules import LIFECYCLE_PROPERTY, ContactAction, HandoffPlan, LifecycleWrite
from handoff_worker.errors import PermanentHubSpotError
from handoff_worker.handoff.ledger import LIFECYCLE_STEP, Ledger, Loss
from handoff_worker.handoff.lock import HeldLock
from handoff_worker.handoff.run_record import HandoffRun
from handoff_worker.hubspot.protocol import HubSpotGateway


class LifecycleWriter:
    def __init__(self, gateway: HubSpotGateway, ledger: Ledger) -> None:
        self.gateway = gateway
        self.ledger = ledger

    def apply(self, run: HandoffRun, lock: HeldLock, loss: Loss, plan: HandoffPlan) -> list[ContactAction]:
        """Clear, then set (+markers, +property nurtures), then check the stage the set's answer
        shows. Returns the actions whose lifecycle step is done (resumed ones included)."""
        fresh = [a for a in plan.actions if not a.resumed]
        failed: set[str] = set()
        lock.ensure_held()
        answered = self._write(run, fresh, failed)
        moved = [
            a for a in fresh if a.lifecycle_write is not LifecycleWrite.NONE and a.contact_id not in failed
        ]
        not_stuck = self._not_stuck(moved, answered)
        if not_stuck:
            # Seen in HubSpot: a backward write answered 2xx and changed nothing. Try once more.
            retry = [a for a in moved if a.contact_id in not_stuck]
            answered = self._write(run, [_as_clear_then_set(a) for a in retry], failed)
            for contact_id, stage in self._not_stuck(
                [a for a in retry if a.contact_id not in failed], answered
            ).items():
                target = next(a.target_stage for a in retry if a.contact_id == contact_id)
                run.fail(
                    contact_id,
                    f"lifecycle stage stayed {stage!r} after clearing and setting {target!r} twice; "
                    "check workflows or integrations that set lifecyclestage on this contact",
                )
                failed.add(contact_id)
        done = []
        for action in plan.actions:
            if action.contact_id in failed:
                continue
            if not action.resumed:
                self.ledger.mark_done(loss.loss_id, action.contact_id, LIFECYCLE_STEP)
                run.contact(action.contact_id).steps_done.append(LIFECYCLE_STEP)
            done.append(action)
        return done

    def _write(
        self, run: HandoffRun, actions: Sequence[ContactAction], failed: set[str]
    ) -> dict[str, str | None]:
        """Returns the lifecycle stage the set's answer shows per contact (None: not shown)."""
        to_clear = {
            a.contact_id: {LIFECYCLE_PROPERTY: ""}
            for a in actions
            if a.lifecycle_write is LifecycleWrite.CLEAR_THEN_SET and a.contact_id not in failed
        }
        if to_clear:
            self._update(run, to_clear, failed, "clear")
        cleared = set(to_clear) - failed
        to_set = {a.contact_id: dict(a.set_properties) for a in actions if a.set_properties}
        to_set = {cid: props for cid, props in to_set.items() if cid not in failed}
        if not to_set:
            return {}
        set_failed: set[str] = set()
        answered = self._update(run, to_set, set_failed, "set")
        failed |= set_failed
        blank = [a for a in actions if a.contact_id in cleared & set_failed]
        if blank:
            self._rescue_cleared_stage(run, blank)
        return answered

    def _rescue_cleared_stage(self, run: HandoffRun, actions: Sequence[ContactAction]) -> None:
        """The clear went through and the set did not: never leave a lifecycle stage blank. Costs
        nothing on the happy path. The contacts stay failed (their set was refused) either way."""
        with_more = {
            a.contact_id: {LIFECYCLE_PROPERTY: a.target_stage or ""}
            for a in actions
            if set(a.set_properties) - {LIFECYCLE_PROPERTY}
        }
        # The refusal may be about a marker or nurture property: the stage alone may pass.
        still_blank = set(self._refusals(with_more)[0]) if with_more else set()
        still_blank |= {a.contact_id for a in actions if a.contact_id not in with_more}
        # After a clear HubSpot takes any stage, so the one read before the handoff goes back.
        restore = {
            a.contact_id: {LIFECYCLE_PROPERTY: a.previous_stage or ""}
            for a in actions
            if a.contact_id in still_blank
        }
        if not restore:
            return
        for contact_id, why in self._refusals(restore)[0].items():
            stage = restore[contact_id][LIFECYCLE_PROPERTY]
            run.fail(
                contact_id,
                f"lifecyclestage is left blank: HubSpot refused writing back {stage!r} after the clear "
                f"({why}); set this contact's lifecycle stage in HubSpot, then replay",
            )

    def _update(
        self, run: HandoffRun, updates: dict[str, dict[str, str]], failed: set[str], what: str
    ) -> dict[str, str | None]:
        """One batch update. Records HubSpot refused (207) or a refused batch (e.g. a property that
        does not exist) fail those contacts; the others go on. Returns the lifecycle stage the
        answer shows for each contact it lists."""
        refused, answered = self._refusals(updates)
        for contact_id, why in refused.items():
            written = sorted(updates[contact_id])
            run.fail(
                contact_id, f"HubSpot refused the {what} write of {written}: {why}; {_write_hint(written)}"
            )
            failed.add(contact_id)
        return answered

    def _refusals(self, updates: dict[str, dict[str, str]]) -> tuple[dict[str, str], dict[str, str | None]]:
        """One batch update; returns the contacts HubSpot refused -> why, and the lifecycle stage
        its answer shows for each contact it updated (HubSpot answers with the objects as they
        now are: a write it accepted and did not apply shows the stage it kept)."""
        try:
            result = self.gateway.batch_update_contacts(updates)
        except PermanentHubSpotError as exc:
            return {contact_id: str(exc) for contact_id in updates}, {}
        refused = {
            contact_id: f"{error.category}: {error.message}"
            for error in result.errors
            for contact_id in error.ids
        }
        return refused, {c.id: c.get(LIFECYCLE_PROPERTY) for c in result.updated}

    def _not_stuck(
        self, actions: Sequence[ContactAction], answered: Mapping[str, str | None]
    ) -> dict[str, str]:
        """Contacts whose lifecycle stage is not the target after the write: id -> stage seen.
        Seen in the set's answer; read back only for contacts that answer does not show."""
        if not actions:
            return {}
        seen = {cid: stage for cid, stage in answered.items() if stage is not None}
        unseen = [a.contact_id for a in actions if a.contact_id not in seen]
        if unseen:
            seen |= {
                c.id: c.get(LIFECYCLE_PROPERTY) or ""
                for c in self.gateway.batch_read(ObjectType.CONTACT, unseen, [LIFECYCLE_PROPERTY])
            }
        return {
            a.contact_id: seen.get(a.contact_id, "(contact not found)")
            for a in actions
            if seen.get(a.contact_id) != a.target_stage
        }


def _as_clear_then_set(action: ContactAction) -> ContactAction:
    return ContactAction(
        action.contact_id,
        action.email,
        LifecycleWrite.CLEAR_THEN_SET,
        action.target_stage,
        {LIFECYCLE_PROPERTY: action.target_stage or ""},
        action.nurtures,
        previous_stage=action.previous_stage,
    )


def _write_hint(written: Sequence[str]) -> str:
    """What to check, by what the refused write carried."""
    if list(written) == [LIFECYCLE_PROPERTY]:
        return (
            "check the contact still exists, that the target is one of the portal's lifecycle stages "
            "(lifecycle_stage in the nurture YAML), and that no workflow or integration locks it"
        )
    return "check the marker and property-nurture names in the nurture YAML exist in HubSpot"
