"""``silorec card | replay``: a run's merge card, and checking a merge against it.

- ``silorec card RUN``: (re)write ``merge-card.json``/``.md`` of a run (e.g. after
  ``silorec audit`` added its verdict).
- ``silorec replay CARD [--run RUN] [--merge LABEL ...]``: recompute the merges from
  the run's stored inputs; exit 0 when every one is bit-identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_DIFFERS = 0, 1


def register(commands: Any) -> None:
    card = commands.add_parser("card", help="write a run's merge card (merge-card.json/.md)")
    card.add_argument("run_dir", type=Path, metavar="RUN")
    card.set_defaults(func=cmd_card)

    replay = commands.add_parser(
        "replay", help="recompute a run's merges from its stored inputs; exit 1 unless identical"
    )
    replay.add_argument("card", type=Path, metavar="CARD",
                        help="merge-card.json, or the run / export folder holding it")  # fmt: skip
    replay.add_argument("--run", type=Path, metavar="RUN",
                        help="the run's folder, if it moved since the card was written")  # fmt: skip
    replay.add_argument("--merge", action="append", default=[], metavar="LABEL",
                        help="only this merge (repeatable)")  # fmt: skip
    replay.set_defaults(func=cmd_replay)


def cmd_card(args: argparse.Namespace) -> int:
    from silorec.provenance import write_card

    for path in write_card(args.run_dir):
        print(path)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from silorec.provenance.replay import replay

    report = replay(args.card, run_dir=args.run, labels=args.merge)
    for line in report.lines():
        print(line)
    verdict = "IDENTICAL" if report.identical else "DIFFERS"
    print(f"replay {verdict}: {sum(m.identical for m in report.merges)}/{len(report.merges)} "
          f"merge(s) bit-identical, from {report.run_dir}")  # fmt: skip
    return EXIT_OK if report.identical else EXIT_DIFFERS
