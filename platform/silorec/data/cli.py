"""``silorec data ...``: inspect and prepare a scenario's domain data (node side).

- ``silorec data stats SCENARIO [--domain NAME ...]``: per domain, users, items,
  interactions and sequence lengths before and after subsampling.
- ``silorec data prepare SCENARIO [--domain NAME ...]``: fill the prepared-data cache
  and report how long it took.
- ``silorec data items SCENARIO --domain NAME --out items.csv``: the domain's item
  catalogue (``item_id`` plus its text columns), the ``--catalogue`` that
  ``silorec recommend`` / ``serve`` take. ``--histories FILE`` also writes each
  evaluable user's test history (one line of ids per user) and ``--targets FILE``
  the item that followed it, to check a model on that domain from outside a run.

Relative data paths resolve against the scenario file's folder (unless the scenario
sets ``data.root`` / ``data.root_env``). Bad data or a bad scenario exits with status 2
and a one-line error, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from silorec.data.errors import DataError

EXIT_USAGE = 2


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``data`` command group to ``subparsers`` (from
    ``ArgumentParser.add_subparsers()``). Each leaf sets ``func``: call
    ``args.func(args)`` to run it; it returns the exit code."""
    parser = subparsers.add_parser(
        "data",
        help="inspect and prepare domain data (node side)",
        description="Inspect and prepare the domain data of a scenario.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND")
    sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("scenario", help="scenario file (TOML) or builtin:NAME")
        p.add_argument(
            "--domain",
            action="append",
            metavar="NAME",
            help="only this domain (repeatable); default: every domain",
        )
        p.add_argument(
            "--data-dir",
            type=Path,
            metavar="PATH",
            help="this node's own data location (needs exactly one --domain): the "
            "domain's folder or archive, or the folder holding its files",
        )
        p.add_argument(
            "--cache-dir",
            type=Path,
            metavar="PATH",
            help="prepared-data cache (default: data.cache_dir, $SILOREC_CACHE_DIR or "
            "~/.cache/silorec)",
        )

    stats = sub.add_parser(
        "stats",
        help="users/items/interactions/lengths before and after subsampling",
        description="Print each domain's statistics before and after subsampling "
        "(prepares and caches the data if needed).",
    )
    common(stats)
    stats.set_defaults(func=cmd_stats)

    prepare = sub.add_parser(
        "prepare",
        help="prepare every domain once and fill the cache",
        description="Import and subsample each domain and write the prepared-data cache.",
    )
    common(prepare)
    prepare.set_defaults(func=cmd_prepare)

    items = sub.add_parser(
        "items",
        help="write a domain's item catalogue (for silorec recommend / serve)",
        description="Write one domain's items (item_id and text columns) as CSV, and "
        "optionally its users' test histories and targets.",
    )
    common(items)
    items.add_argument("--out", type=Path, required=True, metavar="FILE",
                       help="the catalogue CSV to write")  # fmt: skip
    items.add_argument("--histories", type=Path, metavar="FILE",
                       help="also write each evaluable user's test history, one per line")  # fmt: skip
    items.add_argument("--targets", type=Path, metavar="FILE",
                       help="with --histories: the held-out test item of each line")  # fmt: skip
    items.set_defaults(func=cmd_items)
    return parser


def _load(args: argparse.Namespace):  # noqa: ANN202 - (scenario, specs, base_dir)
    from silorec.scenario import load_scenario, resolve_scenario_path

    path = resolve_scenario_path(str(args.scenario))
    scenario = load_scenario(args.scenario)
    base_dir = path.parent if path is not None else None
    if args.domain:
        specs = []
        for name in args.domain:
            try:
                specs.append(scenario.domain(name))
            except KeyError as exc:
                raise DataError(exc.args[0]) from None
    else:
        specs = list(scenario.domains)
    if args.data_dir is not None and len(specs) != 1:
        raise DataError("--data-dir is one domain's data: name that domain with --domain")
    return scenario, specs, base_dir


def _run(args: argparse.Namespace, show_stats: bool) -> int:
    from silorec.data.prepare import prepare_domain
    from silorec.data.stats import format_before_after
    from silorec.scenario import ScenarioError

    try:
        scenario, specs, base_dir = _load(args)
        total = time.perf_counter()
        for i, spec in enumerate(specs):
            prepared = prepare_domain(
                spec,
                scenario.data,
                data_dir=args.data_dir,
                cache_dir=args.cache_dir,
                base_dir=base_dir,
            )
            origin = (
                "from cache" if prepared.from_cache else f"prepared in {prepared.seconds:.1f} s"
            )
            if show_stats:
                if i:
                    print()
                title = f"domain '{spec.name}'{' (unseen)' if spec.unseen else ''}: {prepared.source} ({origin})"
                print(format_before_after(prepared.raw_stats, prepared.stats, title=title))
            else:
                s = prepared.stats
                where = f"; cache {prepared.cache_path}" if prepared.cache_path else ""
                print(
                    f"{spec.name}: {s.users:,} users, {s.items:,} items, {s.interactions:,} "
                    f"interactions ({origin}{where})"
                )
        if not show_stats:
            print(f"{len(specs)} domain(s) ready in {time.perf_counter() - total:.1f} s")
    except (DataError, ScenarioError) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def one_line(message: str) -> str:
    """A multi-line message (a scenario error lists one problem per line) as one line."""
    first, *rest = [line.strip() for line in message.splitlines() if line.strip()] or [""]
    return " ".join([first, "; ".join(rest)]) if rest else first


def cmd_stats(args: argparse.Namespace) -> int:
    """``silorec data stats``."""
    return _run(args, show_stats=True)


def cmd_prepare(args: argparse.Namespace) -> int:
    """``silorec data prepare``."""
    return _run(args, show_stats=False)


def cmd_items(args: argparse.Namespace) -> int:
    """``silorec data items``."""
    import pandas as pd

    from silorec.data.prepare import prepare_domain
    from silorec.results.io import write_text_atomic
    from silorec.scenario import ScenarioError

    try:
        scenario, specs, base_dir = _load(args)
        if len(specs) != 1:
            raise DataError("silorec data items writes one domain: name it with --domain")
        if args.targets is not None and args.histories is None:
            raise DataError("--targets goes with --histories")
        domain = prepare_domain(specs[0], scenario.data, data_dir=args.data_dir,
                                cache_dir=args.cache_dir, base_dir=base_dir).domain  # fmt: skip
        table = pd.DataFrame({"item_id": domain.items.ids, **domain.items.fields})
        write_text_atomic(args.out, table.to_csv(index=False))
        print(f"{domain.name}: {len(table):,} items ({', '.join(table.columns)}) in {args.out}")
        if args.histories is not None:
            ids = domain.items.ids
            cases = [domain.eval_case(int(u), "test") for u in domain.evaluable_users()]
            write_text_atomic(args.histories,
                              "".join(",".join(ids[i] for i in h) + "\n" for h, _ in cases))  # fmt: skip
            if args.targets is not None:
                write_text_atomic(args.targets, "".join(f"{ids[t]}\n" for _, t in cases))
            print(f"{len(cases):,} test histories in {args.histories}"
                  + (f", targets in {args.targets}" if args.targets else ""))  # fmt: skip
    except (DataError, ScenarioError) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m silorec.data.cli data stats ...``); the
    ``silorec`` command registers the same group."""
    parser = argparse.ArgumentParser(prog="silorec")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
