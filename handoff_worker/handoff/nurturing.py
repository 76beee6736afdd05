"""The nurture phase: put the contacts whose lifecycle step is done into their reason's nurtures.

Three methods, from the nurture YAML: a static list (one batched call per list; membership is
idempotent), a workflow (enrollment by email, one call per contact; not idempotent for the person,
so an intent is recorded first), and a property a workflow's trigger watches. Property nurtures
ride in the lifecycle phase's set batch (see `domain.rules.build_plan`), so only lists and
workflows are carried out here, each a ledger step per contact. A nurture HubSpot refuses (a
deleted workflow, a dynamic list) fails those contacts; the other nurtures go on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from handoff_worker.domain.nurture import Nurture, NurtureMethod
from handoff_worker.domain.rules import ContactAction, HandoffPlan, batched_nurtures
from handoff_worker.errors import PermanentHubSpotError
from handoff_worker.handoff.ledger import DONE, Ledger, Loss, step_field
from handoff_worker.handoff.lock import HeldLock
from handoff_worker.handoff.run_record import HandoffRun
from handoff_worker.handoff.workflow_ids import WorkflowIds
from handoff_worker.hubspot.protocol import HubSpotGateway


class Nurturing:
    def __init__(self, gateway: HubSpotGateway, ledger: Ledger, workflow_ids: WorkflowIds) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.workflow_ids = workflow_ids

    def apply(
        self,
        run: HandoffRun,
        lock: HeldLock,
        loss: Loss,
        plan: HandoffPlan,
        ready: Sequence[ContactAction],
        steps_before: Mapping[str, str],
    ) -> None:
        """Every list and workflow nurture each `ready` contact is to enter (its journey decided
        which), unless the ledger (as read before this run) shows it done."""
        for nurture in batched_nurtures(plan.reason) if plan.reason.recycle else ():
            missing = [
                a
                for a in ready
                if nurture in a.nurtures and steps_before.get(step_field(a.contact_id, nurture.key)) != DONE
            ]
            if not missing:
                continue
            lock.ensure_held()
            if nurture.method is NurtureMethod.LIST:
                self._add_to_list(run, loss, nurture, missing)
            else:
                for action in missing:
                    self._enroll(run, loss, nurture, action)

    def _add_to_list(
        self, run: HandoffRun, loss: Loss, nurture: Nurture, actions: Sequence[ContactAction]
    ) -> None:
        assert nurture.list_id is not None
        ids = [a.contact_id for a in actions]
        try:
            result = self.gateway.add_to_list(nurture.list_id, ids)
        except PermanentHubSpotError as exc:
            for contact_id in ids:
                run.fail(contact_id, f"{nurture.key} ({nurture.name}): {exc}; {fix_hint(nurture)}")
            return
        missing = set(result.missing)
        # Adding to a static list is idempotent (a member stays a member), so done is recorded after.
        for contact_id in ids:
            if contact_id in missing:
                run.fail(contact_id, f"{nurture.key}: HubSpot did not know the contact")
                continue
            self._done(run, loss, nurture, contact_id)

    def _enroll(self, run: HandoffRun, loss: Loss, nurture: Nurture, action: ContactAction) -> None:
        assert nurture.workflow_id is not None
        email = (action.email or "").strip()
        if not email:
            run.fail(action.contact_id, f"{nurture.key}: the contact has no email to enroll by")
            return
        # Enrollment is not idempotent for the person (two enrollments, two emails), so the intent is
        # written first. A crash between the call and `done` leaves `intent`; the re-run then calls
        # again. That is safe: HubSpot does not enroll a contact a second time in a workflow that
        # does not allow re-enrollment, and a nurture workflow must not allow it (config check
        # warns). The alternative, skipping on `intent`, could leave the contact never enrolled.
        self.ledger.mark_intent(loss.loss_id, action.contact_id, nurture.key)
        try:
            # The YAML may hold the flow id from the workflow's URL; enrollment wants the legacy id.
            self.gateway.enroll_in_workflow(self.workflow_ids.legacy_id(nurture.workflow_id), email)
        except PermanentHubSpotError as exc:
            self.ledger.clear_step(loss.loss_id, action.contact_id, nurture.key)
            run.fail(action.contact_id, f"{nurture.key} ({nurture.name}): {exc}; {fix_hint(nurture)}")
            return
        self._done(run, loss, nurture, action.contact_id)

    def _done(self, run: HandoffRun, loss: Loss, nurture: Nurture, contact_id: str) -> None:
        self.ledger.mark_done(loss.loss_id, contact_id, nurture.key)
        run.contact(contact_id).steps_done.append(nurture.key)
        run.enrollments.append({"contact": contact_id, "nurture": nurture.key, "name": nurture.name})


def fix_hint(nurture: Nurture) -> str:
    if nurture.method is NurtureMethod.LIST:
        return (
            f"check list {nurture.list_id} exists and is static, or fix it in the nurture YAML, then replay"
        )
    return (
        f"check workflow {nurture.workflow_id} exists and is on, or fix it in the nurture YAML, then replay"
    )
