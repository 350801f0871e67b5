"""`warden keys`: manage the keys file from a shell. A running Warden picks changes up within a second."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from proxy.control.datakey import add_data_key_parsers, cmd_data_key
from proxy.governance.budgets import BudgetSettings
from proxy.governance.keys import KeysFile, digest
from proxy.governance.settings import valid_name
from proxy.settings import ConfigError, load_settings

KEYS_EXAMPLES = """\
examples:
  warden keys create --tenant acme --name ci --config warden.yaml
      prints the new key once; only its hash is stored
  warden keys create --tenant acme --expires 30d --rpm 60 --budget 25 --budget-period monthly --meta owner=ci
  warden keys update 3f2a9c01d4e5 --budget 50 --budget-mode soft --config warden.yaml
  warden keys list --file keys.json
  warden keys rotate 3f2a9c01d4e5 --config warden.yaml
  warden keys revoke 3f2a9c01d4e5 --config warden.yaml
  echo -n "$TOKEN" | warden keys hash
      the SHA-256 for a key or admin token written into the config file
  warden keys new-data-key; warden keys rotate-data-key --config warden.yaml
      encryption at rest: a fresh data key; re-seal the stores under the ring's first key
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


def _expiry(text: str) -> float:
    """`30d`, `12h` from now, or an ISO 8601 time (UTC when it names no zone)."""
    from proxy.telemetry.spend import parse_since

    try:
        return time.time() + parse_since(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=datetime.now().astimezone().tzinfo)).timestamp()


def _terms(args: argparse.Namespace) -> dict[str, Any]:
    """The key's own terms given on the command line (only those given: `update` keeps the rest)."""
    terms: dict[str, Any] = {}
    if args.expires is not None:
        terms["expires_at"] = None if args.expires == "never" else _expiry(args.expires)
    if args.rpm is not None:
        terms["requests_per_minute"] = args.rpm or None
    if args.tpm is not None:
        terms["tokens_per_minute"] = args.tpm or None
    if args.budget is not None:
        budget = {"amount": args.budget, "period": args.budget_period, "mode": args.budget_mode}
        if args.budget_window_s is not None:
            budget["window_s"] = args.budget_window_s
        terms["budget"] = BudgetSettings.model_validate(budget).model_dump(exclude_defaults=True) \
            if args.budget > 0 else None
    if args.meta:
        terms["metadata"] = dict(item.partition("=")[::2] for item in args.meta)
    return terms


def cmd_keys(args: argparse.Namespace) -> int:
    data_key = cmd_data_key(args)
    if data_key is not None:
        return data_key
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
            secret, entry = file.create(args.tenant, args.name, **_terms(args))
        elif args.action == "update":
            entry, secret = file.change(args.key_id, **_terms(args)), ""
        elif args.action == "rotate":
            secret, entry = file.rotate(args.key_id)
        else:
            entry, secret = file.revoke(args.key_id), ""
    except KeyError:
        print(f"warden: no active key {args.key_id!r} in {file.path}", file=sys.stderr)
        return 1
    except ValueError as exc:  # pydantic's ValidationError (a bad budget) is one too
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
    terms = argparse.ArgumentParser(add_help=False)
    terms.add_argument("--expires", metavar="WHEN", help="30d, 12h (from now), an ISO 8601 time, or never")
    terms.add_argument("--rpm", type=int, metavar="N", help="the key's own requests per minute (0: none)")
    terms.add_argument("--tpm", type=int, metavar="N", help="the key's own tokens per minute (0: none)")
    terms.add_argument("--budget", type=float, metavar="AMOUNT", help="the key's own budget (0: none)")
    terms.add_argument("--budget-period", choices=["daily", "weekly", "monthly", "rolling"], default="monthly")
    terms.add_argument("--budget-window-s", type=float, metavar="S", help="for --budget-period rolling")
    terms.add_argument("--budget-mode", choices=["hard", "soft"], default="hard")
    terms.add_argument("--meta", action="append", metavar="K=V", help="free-form metadata (repeat)")
    create = actions.add_parser("create", parents=[where, terms], help="a new key for a tenant (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a note: who or what uses the key")
    actions.add_parser("list", parents=[where], help="every key in the file (ids, tenants, dates; no secrets)")
    update = actions.add_parser("update", parents=[where, terms], help="change a key's expiry, limits, budget "
                                                                       "or metadata (its secret stays)")
    update.add_argument("key_id")
    rotate = actions.add_parser("rotate", parents=[where], help="a new secret for a key; the old one stops at once")
    rotate.add_argument("key_id")
    revoke = actions.add_parser("revoke", parents=[where], help="stop a key for good")
    revoke.add_argument("key_id")
    actions.add_parser("hash", help="SHA-256 of a key or admin token read from stdin (for the config file)")
    add_data_key_parsers(actions)
    keys.set_defaults(func=cmd_keys)
