"""The `hdl` command: one subcommand per pipeline step.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
``hdl relabel`` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hdl.errors import UserError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "split": ("hdl.data.split_cli", "write the labeled/unlabeled indices of one grid cell"),
    "train": ("hdl.training.train_cli", "train a semi-supervised model (stage 1 or 2)"),
    "embed": ("hdl.training.embed_cli", "write a checkpoint's embeddings and probabilities"),
    "relabel": ("hdl.labeling.cli", "pseudo-label unlabeled samples with HDL"),
    "aggregate": ("hdl.report.cli", "collect metrics into tables, plots and a report"),
}


def build_parser(argv_command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hdl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == argv_command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = build_parser(command).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        print(f"hdl {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
