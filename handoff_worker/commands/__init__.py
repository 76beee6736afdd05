"""The `handoff-worker` subcommands for operators: `config` (check the nurture file, create marker
properties) and the ops commands (`resync`, `failures`, `replay`, `report`).

They sit above `handoff/` and beside the other entry points: each reads settings, gets its pieces
from `handoff_worker.wiring`, and calls the use cases below. `handoff_worker.cli` imports them only
when used.
"""
