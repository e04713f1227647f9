"""``multihead data list`` and ``multihead data fetch NAME``: a thin shell over :mod:`multihead.data.fetch`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_data_commands"]


def _list(args: argparse.Namespace) -> int:
    from multihead.data.fetch import cache_root, data_status

    for status in data_status():
        where = "an installed package" if status.folder is None else str(status.folder)
        state = "present" if not status.missing else f"missing {len(status.missing)} of " \
                f"{len(status.missing) + len(status.present)} files"
        print(f"{status.name:<18} {state:<26} {where}")
        print(f"{'':<18} source: {status.source}; licence: {status.licence}")
        if status.missing:
            how = f"multihead data fetch {status.name}" if status.fetchable else "see its source (not fetchable)"
            print(f"{'':<18} get it: {how}")
    print(f"fetched sets go to {cache_root()} (set MULTIHEAD_DATA to use another folder)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from multihead.data.fetch import fetch_data

    for name in args.names:
        folder = fetch_data(name, root=args.root, replace=args.replace, progress=not args.quiet)
        print(f"{name}: {folder}")
    return 0


def add_data_commands(commands: Any) -> None:
    """Add ``data list`` and ``data fetch`` to the ``multihead`` sub-command parser."""
    data = commands.add_parser("data", help="the known public data sets: which are present, fetch them")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="each known set: present or missing, where, its source and licence")
    listing.set_defaults(run=_list)
    fetch = actions.add_parser("fetch", help="download sets from their public sources, checked by sha256")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="data set names (see `multihead data list`)")
    fetch.add_argument("--root", help="folder to fetch into (default $MULTIHEAD_DATA or ~/.cache/multihead/data)")
    fetch.add_argument("--replace", action="store_true", help="replace files that are there with other checksums")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(run=_fetch)
