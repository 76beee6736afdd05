"""A local stand-in for HubSpot: its REST API, rate limits, quirks and signed webhooks.

It shares no code with `handoff_worker.hubspot`: it is the other side of the wire, so a
misunderstanding of HubSpot in the client cannot hide in a module both sides import.
"""
