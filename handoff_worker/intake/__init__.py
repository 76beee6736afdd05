"""The webhook intake: verify HubSpot's signature, parse, dedupe, enqueue, answer."""

from handoff_worker.intake.app import create_app

__all__ = ["create_app"]
