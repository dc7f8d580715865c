"""``python main.py keys generate DIR [--client NAME[:ROLE] ...]``: CurveZMQ key pairs for TickDesk."""

from __future__ import annotations

import argparse

from workers.security import ROLES, generate


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="main.py keys", description="Create CurveZMQ keys for running TickDesk beyond loopback.")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="create server and client key pairs in DIR")
    g.add_argument("dir", help="key directory (created if missing)")
    g.add_argument("--client", action="append", default=[], metavar="NAME[:ROLE]",
                   help=f"also create an allowed client key NAME with ROLE ({', '.join(ROLES)}; default trader); repeatable")
    args = p.parse_args(argv)
    try:
        made = generate(args.dir, args.client)
    except ValueError as e:
        p.error(str(e))
    for name, path in made.items():
        print(f"{name:<10} {path}")
    print(f"allowed client keys: {args.dir}/authorized/ROLE/ (put a client's public .key file in the folder of its role)")
    return 0
