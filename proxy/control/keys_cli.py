"""`warden keys`: manage the keys file from a shell. A running Warden picks changes up within a second."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from proxy.governance.keys import KeysFile, digest
from proxy.governance.settings import valid_name
from proxy.settings import ConfigError, load_settings

KEYS_EXAMPLES = """\
examples:
  warden keys create --tenant acme --name ci --config warden.yaml
      prints the new key once; only its hash is stored
  warden keys list --file keys.json
  warden keys rotate 3f2a9c01d4e5 --config warden.yaml
  warden keys revoke 3f2a9c01d4e5 --config warden.yaml
  echo -n "$TOKEN" | warden keys hash
      the SHA-256 for a key or admin token written into the config file
"""


def _file(args: argparse.Namespace) -> KeysFile:
    if args.file:
        return KeysFile(Path(args.file))
    if args.config:
        keys_file = load_settings(Path(args.config)).governance.keys_file
        if keys_file:
            return KeysFile(Path(keys_file))
        raise ConfigError([f"{args.config}: governance.keys_file is not set"])
    raise ConfigError(["say which keys file: --file FILE, or --config FILE with governance.keys_file"])


def cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "hash":
        key = sys.stdin.read().strip()
        if not key:
            print("warden: give the key on standard input", file=sys.stderr)
            return 2
        print(digest(key))
        return 0
    file = _file(args)
    try:
        if args.action == "list":
            for key in file.load():
                print(json.dumps(key.public()))
            return 0
        if args.action == "create":
            if not valid_name(args.tenant):
                print("warden: tenant: 1-64 characters of letters, digits and . _ -", file=sys.stderr)
                return 2
            secret, entry = file.create(args.tenant, args.name)
        elif args.action == "rotate":
            secret, entry = file.rotate(args.key_id)
        else:
            entry, secret = file.revoke(args.key_id), ""
    except KeyError:
        print(f"warden: no active key {args.key_id!r} in {file.path}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"warden: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({**entry.public(), **({"key": secret} if secret else {})}))
    if secret:
        print("store the key now: it is not kept and cannot be shown again", file=sys.stderr)
    return 0


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="create, list, rotate and revoke API keys (the keys file)",
                          epilog=KEYS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--file", metavar="FILE", help="the keys file (JSON)")
    where.add_argument("--config", metavar="FILE", help="a config whose governance.keys_file is used")
    create = actions.add_parser("create", parents=[where], help="a new key for a tenant (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a note: who or what uses the key")
    actions.add_parser("list", parents=[where], help="every key in the file (ids, tenants, dates; no secrets)")
    rotate = actions.add_parser("rotate", parents=[where], help="a new secret for a key; the old one stops at once")
    rotate.add_argument("key_id")
    revoke = actions.add_parser("revoke", parents=[where], help="stop a key for good")
    revoke.add_argument("key_id")
    actions.add_parser("hash", help="SHA-256 of a key or admin token read from stdin (for the config file)")
    keys.set_defaults(func=cmd_keys)
