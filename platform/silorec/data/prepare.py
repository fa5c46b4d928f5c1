"""Preparing a node's domain: find its data, import it, subsample it, cache it.

:func:`prepare_domain` is what a domain node calls. The first call reads and
subsamples the data and writes a cache entry (:mod:`silorec.data.cache`); later calls
with the same settings and unchanged input files read the entry back.

Where file-based data is looked for, first match wins:

1. ``data_dir``: a node's own override (e.g. deployment ``--node-config
   data-dir=...``). It is the domain itself: the MergeRec folder or archive, the folder
   holding the generic tables, or the folder holding the raw Amazon files.
2. Otherwise the source's path; a relative one resolves against the data root: the
   environment variable named by ``data.root_env`` when it is set and non-empty, else
   ``data.root`` (relative to ``base_dir``), else ``base_dir`` (the scenario file's
   folder), else the working directory.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from silorec.data.cache import (
    cache_key,
    file_fingerprint,
    load_cached,
    resolve_cache_dir,
    store,
)
from silorec.data.domain import DomainData
from silorec.data.errors import DataError
from silorec.data.stats import DomainStats, domain_stats
from silorec.data.subsample import subsample
from silorec.scenario.schema import (
    AmazonRawSource,
    DataSettings,
    DomainSpec,
    GenericSource,
    MergeRecSource,
    SyntheticSource,
)

log = logging.getLogger(__name__)


@dataclass
class PreparedDomain:
    """A domain ready for training and evaluation."""

    domain: DomainData  # after subsampling
    raw_stats: DomainStats  # as imported
    stats: DomainStats  # after subsampling
    from_cache: bool
    source: str = ""  # where the data came from, in words
    cache_path: Path | None = None  # the cache entry (None when not cached)
    seconds: float = 0.0  # wall time of this call

    @property
    def name(self) -> str:
        return self.domain.name


@dataclass
class _Resolved:
    """A data source with its paths resolved: what to fingerprint, how to load."""

    description: str
    files: list[Path]
    load: Callable[[], DomainData]


def _expand(path: str | Path) -> Path:
    return Path(os.path.expanduser(str(path)))


def data_root(settings: DataSettings, base_dir: Path | None) -> tuple[Path, str]:
    """``(root, how it was chosen)`` for relative data paths."""
    if settings.root_env:
        value = os.environ.get(settings.root_env, "").strip()
        if value:
            return _expand(value), f"${settings.root_env}"
    if settings.root:
        root = _expand(settings.root)
        if not root.is_absolute():
            root = (base_dir or Path.cwd()) / root
        return root, "data.root"
    if base_dir is not None:
        return Path(base_dir), "the scenario's folder"
    return Path.cwd(), "the working directory"


def _not_found(
    spec: DomainSpec,
    settings: DataSettings,
    tried: Path,
    how: str | None,
    *,
    data_dir: Path | None,
) -> DataError:
    message = f"domain '{spec.name}': data not found at {tried}"
    if data_dir is not None:
        message += (
            f" (inside the node's data-dir {data_dir})."
            if tried != data_dir
            else " (the node's data-dir)."
        )
    else:
        message += f" (relative paths resolve against {how})." if how else "."
        if settings.root_env:
            value = os.environ.get(settings.root_env, "").strip()
            state = f"now {value}" if value else "now not set"
            message += (
                f" Set ${settings.root_env} ({state}) to the folder holding the data, "
                "or give this node its own data-dir."
            )
    if settings.how_to_get:
        message += f" How to get the data: {settings.how_to_get.strip()}"
    return DataError(message)


def resolve_source(
    spec: DomainSpec,
    settings: DataSettings,
    *,
    data_dir: Path | None = None,
    base_dir: Path | None = None,
) -> _Resolved:
    """Find the input files of ``spec`` (raising a helpful :class:`DataError` when they
    are missing) and return how to load them."""
    source = spec.data
    name = spec.name
    if isinstance(source, SyntheticSource):
        from silorec.data import synthetic  # written separately; imported only when used

        files = [Path(synthetic.__file__)] if getattr(synthetic, "__file__", None) else []
        return _Resolved(
            description=f"synthetic (world_seed={source.world_seed}, seed={source.seed})",
            files=files,
            load=lambda: synthetic.generate_domain(source, name),
        )

    root, how = data_root(settings, base_dir)
    override = None if data_dir is None else _expand(data_dir).resolve()

    def locate(path_str: str) -> Path:
        path = _expand(path_str)
        return path if path.is_absolute() else root / path

    def need(path: Path, *, want_dir: bool | None = None) -> Path:
        """``path`` when it exists (as a folder / a file / either); else the error."""
        ok = path.is_dir() if want_dir else path.is_file() if want_dir is False else path.exists()
        if not ok:
            relative = override is None and path.is_relative_to(root)
            raise _not_found(spec, settings, path, how if relative else None, data_dir=override)
        return path

    if isinstance(source, MergeRecSource):
        from silorec.data.importers import mergerec

        if override is not None:
            path = override
            # A folder of archives (like the published set) also works: pick ours.
            candidate = override / Path(source.path).name
            if override.is_dir() and not (override / "train.json").exists() and candidate.exists():
                path = candidate
        else:
            path = locate(source.path)
        need(path)
        return _Resolved(
            description=f"mergerec {path}",
            files=mergerec.input_files(path),
            load=lambda: mergerec.load_mergerec(path, name),
        )

    if isinstance(source, GenericSource):
        from silorec.data.importers import generic

        folder = override if override is not None else locate(source.path)
        need(folder, want_dir=True)
        inter, items = generic.table_paths(folder, source)
        need(inter, want_dir=False)
        need(items, want_dir=False)
        return _Resolved(
            description=f"generic {folder} ({inter.name}, {items.name})",
            files=[inter, items],
            load=lambda: generic.load_generic(folder, source, name),
        )

    if isinstance(source, AmazonRawSource):
        from silorec.data.importers import amazon_raw

        if override is not None:
            need(override, want_dir=True)
            reviews = override / Path(source.reviews).name
            metadata = override / Path(source.metadata).name
        else:
            reviews, metadata = locate(source.reviews), locate(source.metadata)
        need(reviews, want_dir=False)
        need(metadata, want_dir=False)
        return _Resolved(
            description=f"amazon-raw reviews={reviews} metadata={metadata}",
            files=[reviews, metadata],
            load=lambda: amazon_raw.load_amazon_raw(
                reviews, metadata, name, min_rating=source.min_rating
            ),
        )

    raise DataError(
        f"domain '{name}': unknown data source kind {source.kind!r}"
    )  # pragma: no cover


def prepare_domain(
    spec: DomainSpec,
    settings: DataSettings,
    *,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    base_dir: Path | None = None,
    use_cache: bool = True,
) -> PreparedDomain:
    """Import, subsample and cache the domain ``spec``; read the cache when it can.

    ``cache_dir`` (a caller's explicit choice) wins over ``settings.cache_dir``, which
    wins over ``$SILOREC_CACHE_DIR`` / ``~/.cache/silorec``. Failing to write the cache
    (e.g. a read-only folder) only logs a warning.
    """
    start = time.perf_counter()
    resolved = resolve_source(spec, settings, data_dir=data_dir, base_dir=base_dir)

    key = folder = None
    if use_cache:
        folder = (
            Path(cache_dir)
            if cache_dir is not None
            else resolve_cache_dir(settings.cache_dir, base_dir)
        )
        try:
            files = file_fingerprint(resolved.files)
        except OSError as exc:
            raise DataError(
                f"domain '{spec.name}': cannot read {exc.filename}: {exc.strerror}"
            ) from None
        key = cache_key(
            spec.name,
            spec.data.model_dump(mode="json"),
            spec.subsample.model_dump(mode="json"),
            files,
        )
        cached = load_cached(folder, key)
        if cached is not None:
            seconds = time.perf_counter() - start
            log.info("domain '%s': prepared data read from cache %s", spec.name, cached.path)
            return PreparedDomain(
                domain=cached.domain,
                raw_stats=cached.raw_stats,
                stats=cached.stats,
                from_cache=True,
                source=resolved.description,
                cache_path=cached.path,
                seconds=seconds,
            )

    raw = resolved.load()
    if raw.name != spec.name:
        raw.name = spec.name
    raw_stats = domain_stats(raw)
    domain = subsample(raw, spec.subsample)
    stats = domain_stats(domain)

    entry = None
    if use_cache and folder is not None and key is not None:
        try:
            entry = store(
                folder,
                key,
                domain,
                raw_stats=raw_stats,
                stats=stats,
                meta={
                    "source": resolved.description,
                    "source_spec": spec.data.model_dump(mode="json"),
                    "subsample": spec.subsample.model_dump(mode="json"),
                    "files": files,
                },
            )
        except OSError as exc:
            log.warning(
                "domain '%s': could not write the prepared-data cache in %s: %s",
                spec.name,
                folder,
                exc,
            )
    seconds = time.perf_counter() - start
    log.info(
        "domain '%s': prepared %s users, %s items, %s interactions from %s in %.1f s",
        spec.name,
        f"{stats.users:,}",
        f"{stats.items:,}",
        f"{stats.interactions:,}",
        resolved.description,
        seconds,
    )
    return PreparedDomain(
        domain=domain,
        raw_stats=raw_stats,
        stats=stats,
        from_cache=False,
        source=resolved.description,
        cache_path=entry,
        seconds=seconds,
    )
