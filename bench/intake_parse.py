"""CPU of the intake's pure part for one 100-event batch (the shape bench/ingest.py sends):
JSON decode, parse into typed events, decide, hash dedupe keys. In process, no Redis, no HTTP.

    .venv/bin/python bench/intake_parse.py [--repeat 40]

Reports the least CPU time (`time.process_time`) over the repeats, which is what survives a
machine shared with other work. Run it from another checkout (e.g. `git archive <commit> | tar -x
-C /tmp/base`, then `cd /tmp/base` and run this file from there) to compare two versions: the
package is imported from the current directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit

sys.path.insert(0, ".")

from handoff_worker.domain import events

BATCH = json.dumps(
    [
        {
            "eventId": i,
            "portalId": 1,
            "occurredAt": 1_764_590_000_000,
            "subscriptionType": "deal.propertyChange",
            "attemptNumber": 0,
            "objectId": 1 + i * 7,
            "propertyName": "dealstage",
            "propertyValue": "closedlost",
            "changeSource": "CRM_UI",
        }
        for i in range(100)
    ]
).encode()
WATCHED = events.WatchedProperties(deal=frozenset({"dealstage"}), contact=frozenset())


def one_batch() -> None:
    payload = json.loads(BATCH)
    parse_batch = getattr(events, "parse_batch", None)  # older versions only have parse_events
    parsed = parse_batch(payload).events if parse_batch else events.parse_events(payload)
    for decision in events.decide_all(parsed, watched=WATCHED, app_id="1"):
        decision.event.dedupe_key()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    runs = timeit.repeat(one_batch, number=100, repeat=args.repeat, timer=time.process_time)
    print(f"{min(runs) / 100 * 1e6:,.0f} us of CPU per 100-event batch ({events.__file__})")


if __name__ == "__main__":
    main()
