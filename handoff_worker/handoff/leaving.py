"""The leaving phase: take contacts out of the nurtures their journey left (a second loss that
switched the nurture, a reason that never nurtures), before they enter the next one.

A workflow is left by legacy unenrollment (by email, one call per contact), a static list by one
batched removal per list; a property nurture is cleared in the lifecycle phase's set batch (see
`domain.rules.build_plan`). Each is a ledger step (`leave:<nurture key>`) per loss and contact, so
a re-run does not repeat it. Leaving is idempotent in HubSpot (a contact not enrolled or not a
member is no error), so the step is recorded after the call. A workflow or list HubSpot no longer
has holds nobody: nothing to leave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from handoff_worker.domain.nurture import Nurture, NurtureMethod
from handoff_worker.domain.rules import ContactAction
from handoff_worker.errors import NotFoundError, PermanentHubSpotError
from handoff_worker.handoff.ledger import DONE, Ledger, Loss, step_field
from handoff_worker.handoff.lock import HeldLock
from handoff_worker.handoff.nurturing import fix_hint
from handoff_worker.handoff.run_record import HandoffRun
from handoff_worker.handoff.workflow_ids import WorkflowIds
from handoff_worker.hubspot.protocol import HubSpotGateway


def leave_step(nurture_key: str) -> str:
    return f"leave:{nurture_key}"


def leave_list(
    gateway: HubSpotGateway, run: HandoffRun, nurture: Nurture, contact_ids: Sequence[str]
) -> bool:
    """Takes the contacts off the nurture's static list. A list that is gone counts as left; when
    HubSpot refuses, each contact's failure is in `run` and the answer is False."""
    assert nurture.list_id is not None
    try:
        gateway.remove_from_list(nurture.list_id, contact_ids)
    except NotFoundError:
        pass  # the list is gone: nobody is on it
    except PermanentHubSpotError as exc:
        for contact_id in contact_ids:
            run.fail(contact_id, f"leaving {nurture.key}: {exc}; {fix_hint(nurture)}")
        return False
    return True


def unenroll(
    gateway: HubSpotGateway,
    workflow_ids: WorkflowIds,
    run: HandoffRun,
    nurture: Nurture,
    contact_id: str,
    email: str,
) -> bool:
    """Takes the contact (by its email, as the legacy endpoint wants) out of the nurture's workflow.
    A workflow or email that is gone counts as left; a refusal is in `run` and the answer is False."""
    assert nurture.workflow_id is not None
    try:
        gateway.unenroll_from_workflow(workflow_ids.legacy_id(nurture.workflow_id), email)
    except NotFoundError:
        pass  # the workflow (or the contact's email) is gone: nothing to leave
    except PermanentHubSpotError as exc:
        run.fail(contact_id, f"leaving {nurture.key}: {exc}; {fix_hint(nurture)}")
        return False
    return True


class Leaving:
    def __init__(self, gateway: HubSpotGateway, ledger: Ledger, workflow_ids: WorkflowIds) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.workflow_ids = workflow_ids

    def apply(
        self,
        run: HandoffRun,
        lock: HeldLock,
        loss: Loss,
        ready: Sequence[ContactAction],
        steps_before: Mapping[str, str],
    ) -> None:
        keys = list(dict.fromkeys(n.key for a in ready for n in a.leave))
        for key in keys:
            nurture = Nurture.from_key(key)
            missing = [
                a
                for a in ready
                if any(n.key == key for n in a.leave)
                and steps_before.get(step_field(a.contact_id, leave_step(key))) != DONE
            ]
            if not missing:
                continue
            lock.ensure_held()
            if nurture.method is NurtureMethod.LIST:
                self._leave_list(run, loss, nurture, missing)
            elif nurture.method is NurtureMethod.WORKFLOW:
                for action in missing:
                    self._unenroll(run, loss, nurture, action)

    def _leave_list(
        self, run: HandoffRun, loss: Loss, nurture: Nurture, actions: Sequence[ContactAction]
    ) -> None:
        ids = [a.contact_id for a in actions]
        if leave_list(self.gateway, run, nurture, ids):
            for contact_id in ids:
                self._done(run, loss, nurture, contact_id)

    def _unenroll(self, run: HandoffRun, loss: Loss, nurture: Nurture, action: ContactAction) -> None:
        email = (action.email or "").strip()
        if not email:
            run.fail(action.contact_id, f"leaving {nurture.key}: the contact has no email to unenroll by")
            return
        if unenroll(self.gateway, self.workflow_ids, run, nurture, action.contact_id, email):
            self._done(run, loss, nurture, action.contact_id)

    def _done(self, run: HandoffRun, loss: Loss, nurture: Nurture, contact_id: str) -> None:
        self.ledger.mark_done(loss.loss_id, contact_id, leave_step(nurture.key))
        run.contact(contact_id).steps_done.append(leave_step(nurture.key))
        run.left.append({"contact": contact_id, "nurture": nurture.key})
