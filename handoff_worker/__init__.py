"""handoff-worker: hands lost HubSpot deals and unqualified leads back to marketing nurture."""

__version__ = "0.1.0"
