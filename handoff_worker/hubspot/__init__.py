"""The only code that talks to HubSpot."""
