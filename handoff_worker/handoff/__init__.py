"""Use cases: one handoff (read -> plan -> apply), the ledger, dead letters, audit, resync sweeps,
replay and the closed-loop report. They reach HubSpot only through `hubspot.protocol` and import
nothing above them: entry points (tasks, beat, commands) wire them in `handoff_worker.wiring`."""
