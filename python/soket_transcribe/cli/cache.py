"""`soket-transcribe cache info|clear`: the local cache of finished batches, with no token needed."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .. import _core

__all__ = ["add_parser"]


def add_parser(subcommands: Any) -> None:
    cache = subcommands.add_parser(
        "cache",
        help="show or clear the local cache of finished batches",
        description="Show or clear the local cache of finished batches (Client(cache_dir=...) or $SOKET_CACHE_DIR).",
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--cache-dir", metavar="DIR", help="the cache directory (default: $SOKET_CACHE_DIR)")
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", parents=[where], help="entries, batches and bytes in the cache")
    info.set_defaults(run=_info)
    clear = actions.add_parser("clear", parents=[where], help="remove every entry, or those of one batch")
    clear.add_argument("batch_id", metavar="BATCH_ID", nargs="?", help="only this batch's entries")
    clear.set_defaults(run=_clear)


def _cache_dir(args: argparse.Namespace) -> str:
    cache_dir = args.cache_dir or os.environ.get("SOKET_CACHE_DIR")
    if not cache_dir:
        raise ValueError("no cache directory: pass --cache-dir or set SOKET_CACHE_DIR")
    return str(cache_dir)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _info(args: argparse.Namespace) -> int:
    info = _core._cache_info(_cache_dir(args))
    entries = _plural(info["entries"], "entry", "entries")
    batches = _plural(info["batches"], "batch", "batches")
    print(f"{info['dir']}: {entries} of {batches}, {info['bytes'] / 1e6:.1f} MB ({info['bytes']} bytes)")
    return 0


def _clear(args: argparse.Namespace) -> int:
    removed = _core._clear_cache(_cache_dir(args), args.batch_id)
    print(f"removed {_plural(removed, 'entry', 'entries')}")
    return 0
