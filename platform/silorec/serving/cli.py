"""``silorec export | recommend | serve``: use a run's merged model.

- ``silorec export RUN [--model LABEL] --out DIR``: a self-contained model folder.
- ``silorec recommend DIR --catalogue items.csv --history "id1,id2" -k 10``; batch
  mode ``--histories FILE`` (one history per line, ids separated by commas), JSON
  lines out.
- ``silorec serve DIR --catalogue items.csv [--host 127.0.0.1] [--port 8000]``.

``DIR`` is an export folder or a run folder: for a run, ``--model`` names one of its
saved models (default: the merge with the best validation Recall@10), and
``--domain NAME`` takes the catalogue of one of the scenario's domains, prepared on
this machine (``--user ID`` then recommends for one of its users). So right after
``silorec simulate``::

    silorec recommend runs/<run> --domain books --user <id> -k 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def register(commands: Any) -> None:
    """Add the three commands to the ``silorec`` sub-command table."""
    export = commands.add_parser(
        "export", help="write one model of a run as a self-contained folder"
    )
    export.add_argument("run_dir", type=Path, metavar="RUN")
    export.add_argument("--model", metavar="LABEL",
                        help="the model's label in the run (e.g. 'mergerec', 'theta0'); "
                        "default: the merge with the best validation Recall@10")  # fmt: skip
    export.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="the folder to create (absent or empty)")  # fmt: skip
    export.set_defaults(func=cmd_export)

    recommend = commands.add_parser(
        "recommend", help="recommend with an exported model (or a run's saved model)"
    )
    _model_arguments(recommend)
    given = recommend.add_mutually_exclusive_group(required=True)
    given.add_argument("--history", help="item ids, oldest first, separated by commas")
    given.add_argument("--user", metavar="ID",
                       help="a user of --domain: their whole sequence is the history")  # fmt: skip
    given.add_argument("--histories", type=Path, metavar="FILE",
                       help="one history per line (ids separated by commas): JSON lines out")  # fmt: skip
    recommend.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    recommend.add_argument("--exclude-history", action=argparse.BooleanOptionalAction,
                           default=None, help="drop the history's own items "
                           "(default: as the run's evaluation did)")  # fmt: skip
    recommend.add_argument("--json", action="store_true", help="JSON instead of a table")
    recommend.add_argument("--out", type=Path, help="write batch results here (atomically)")
    recommend.set_defaults(func=cmd_recommend)

    serve = commands.add_parser("serve", help="serve an exported model over HTTP (FastAPI)")
    _model_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for")
    serve.set_defaults(func=cmd_serve)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, metavar="DIR",
                        help="an export folder (silorec export) or a run folder")  # fmt: skip
    parser.add_argument("--model", metavar="LABEL",
                        help="for a run folder: which saved model (default: the merge with "
                        "the best validation Recall@10)")  # fmt: skip
    items = parser.add_mutually_exclusive_group(required=True)
    items.add_argument("--catalogue", type=Path, metavar="FILE",
                       help="items table (CSV/TSV/Parquet): an id column and text columns")  # fmt: skip
    items.add_argument("--domain", metavar="NAME",
                       help="the catalogue of this domain of the run's scenario (prepared "
                       "here; with --scenario for an export folder)")  # fmt: skip
    parser.add_argument("--scenario", metavar="FILE",
                        help="the scenario --domain comes from (default: the run's own)")  # fmt: skip
    parser.add_argument("--id-column", default="item_id", help="the items' id column")


def _load(args: argparse.Namespace):  # noqa: ANN202 - (model, catalogue, domain data)
    from silorec.serving import Catalogue, ExportError, open_model

    model = open_model(args.model_dir, args.model)
    if args.catalogue is not None:
        if getattr(args, "user", None) is not None:
            raise ExportError("--user needs --domain (the user's domain), not --catalogue")
        catalogue = Catalogue.from_file(args.catalogue, model.config.text.fields, args.id_column)
        return model, catalogue, None
    catalogue, domain = _domain_catalogue(args)
    return model, catalogue, domain


def _domain_catalogue(args: argparse.Namespace):  # noqa: ANN202 - (catalogue, domain data)
    from silorec.results import load_run
    from silorec.scenario import Scenario, load_scenario, resolve_scenario_path
    from silorec.serving.bundle import ExportError
    from silorec.serving.catalogue import domain_catalogue

    if args.scenario is not None:
        path = resolve_scenario_path(str(args.scenario))
        scenario = load_scenario(args.scenario)
        base_dir = path.parent if path is not None else None
    elif (args.model_dir / "results.json").is_file():
        scenario = Scenario.model_validate(load_run(args.model_dir).scenario)
        base_dir = None
    else:
        raise ExportError(f"{args.model_dir}: --domain on an export folder needs --scenario FILE")
    return domain_catalogue(scenario, args.domain, base_dir)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cmd_export(args: argparse.Namespace) -> int:
    from silorec.serving import export_model, read_config

    out = export_model(args.run_dir, args.model, args.out)
    print(f"exported {read_config(out).label!r} to {out}")
    print(f'try: silorec recommend {out} --catalogue items.csv --history "ID1,ID2" -k 10')
    return EXIT_OK


def cmd_recommend(args: argparse.Namespace) -> int:
    from silorec.results.io import write_text_atomic
    from silorec.serving.catalogue import user_history

    model, catalogue, domain = _load(args)
    if args.history is not None or args.user is not None:
        history = (
            _split(args.history) if args.history is not None else user_history(domain, args.user)
        )
        if not args.json:
            print(f"model {model.label!r} ({model.config.kind}), {len(catalogue):,} items "
                  f"from {catalogue.source}")  # fmt: skip
        if args.user is not None and not args.json:
            print(f"user {args.user}: {len(history)} item(s), last: "
                  f"{catalogue.texts[catalogue.index[history[-1]]][:70]}")  # fmt: skip
        recs = model.recommend(history, catalogue, args.k, args.exclude_history)
        if args.json:
            print(json.dumps([{"item_id": r.item_id, "score": r.score} for r in recs]))
        else:
            texts = {i: catalogue.texts[catalogue.index[i]] for i in (r.item_id for r in recs)}
            print(f"{'rank':>4}  {'score':>8}  item")
            for rank, r in enumerate(recs, 1):
                print(f"{rank:>4}  {r.score:8.4f}  {r.item_id}  {texts[r.item_id][:70]}")
        return EXIT_OK
    if not args.histories.is_file():
        raise FileNotFoundError(f"{args.histories}: file not found")
    histories = [_split(line) for line in args.histories.read_text().splitlines() if line.strip()]
    results = model.recommend_batch(histories, catalogue, args.k, args.exclude_history)
    lines = "".join(
        json.dumps({"line": n, "items": [r.item_id for r in recs],
                    "scores": [round(r.score, 6) for r in recs]}) + "\n"
        for n, recs in enumerate(results, 1)
    )  # fmt: skip
    if args.out:
        write_text_atomic(args.out, lines)
        print(f"{len(results)} histories: recommendations in {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from silorec.serving.service import serve

    model, catalogue, _ = _load(args)
    print(f"serving {model.label!r} over {len(catalogue):,} items on http://{args.host}:{args.port}",
          file=sys.stderr)  # fmt: skip
    serve(model, catalogue, args.host, args.port, args.max_k)
    return EXIT_OK
