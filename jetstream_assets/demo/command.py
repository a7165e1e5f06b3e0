"""`jetstream-assets demo`: the demo adds its subcommand to the CLI through the `jetstream_assets.commands` entry
point group (pyproject.toml), so the product's CLI never imports the demo package."""

from __future__ import annotations

import argparse

from jetstream_assets.cli import HOME_HELP, common
from jetstream_assets.home import home_dir


def add_demo(sub) -> None:
    demo = sub.add_parser("demo", parents=[common()],
                          help="Generate the demo world and analyse every demo experiment.")
    demo.add_argument("--home", default=None, help=HOME_HELP)
    demo.add_argument("--clients", type=int, default=100_000, help="Synthetic clients (up to 1,000,000).")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from jetstream_assets.demo.run import run_demo

    return run_demo(home_dir(args.home), clients=args.clients)
