"""``python -m ocrfleet_api.admin``: create tenants, issue and revoke API keys.

Talks to the results database named by ``OCRFLEET_DATABASE_URL`` (and derives signing secrets
from ``OCRFLEET_SIGNING_MASTER_KEY``). A key is printed once, as JSON, when it is issued.

    python -m ocrfleet_api.admin create-tenant acme [--require-signature] [--rate-limit N]
                                                    [--mask-fields id_number,name | all | none]
                                                    [--ocrjob-namespaces loans,statements]
    python -m ocrfleet_api.admin issue-key acme [--label ci]
    python -m ocrfleet_api.admin revoke-key <key_id>
    python -m ocrfleet_api.admin list-keys acme
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ocrfleet.masking import MaskPolicy
from ocrfleet.store import ResultStore, make_engine
from ocrfleet_api.settings import ApiSettings
from ocrfleet_api.tenants import TenantDirectory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocrfleet_api.admin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-tenant", help="create a tenant")
    p.add_argument("name")
    p.add_argument("--require-signature", action="store_true", help="refuse unsigned requests")
    p.add_argument("--rate-limit", type=int, default=None, help="requests per rate-limit window")
    p.add_argument("--mask-fields", default=None,
                   help="the tenant's masking policy, comma-separated ('none' masks nothing); "
                        "default: the deployment's (OCRFLEET_MASK_DEFAULT)")
    p.add_argument("--ocrjob-namespaces", default="",
                   help="namespaces whose OcrJob results the tenant's keys may read, comma-separated")
    p = sub.add_parser("issue-key", help="issue an API key (printed once)")
    p.add_argument("tenant")
    p.add_argument("--label", default="")
    p = sub.add_parser("revoke-key", help="revoke an API key by its id")
    p.add_argument("key_id")
    p = sub.add_parser("list-keys", help="list a tenant's keys (ids only)")
    p.add_argument("tenant")
    args = parser.parse_args(argv)

    settings = ApiSettings()
    try:
        master = settings.master_key()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    store = ResultStore(engine)
    store.create_schema()
    directory = TenantDirectory(store, master)
    try:
        if args.command == "create-tenant":
            masks = None if args.mask_fields is None else MaskPolicy.from_names(args.mask_fields.split(",")).names()
            namespaces = [n.strip() for n in args.ocrjob_namespaces.split(",") if n.strip()]
            directory.create_tenant(args.name, require_signature=args.require_signature, rate_limit=args.rate_limit,
                                    mask_fields=masks, ocrjob_namespaces=namespaces or None)
            print(json.dumps({"tenant": args.name}))
        elif args.command == "issue-key":
            print(json.dumps(dataclasses.asdict(directory.issue_key(args.tenant, label=args.label))))
        elif args.command == "revoke-key":
            directory.revoke_key(args.key_id)
            print(json.dumps({"revoked": args.key_id}))
        else:
            keys = directory.list_keys(args.tenant)
            print(json.dumps([{"key_id": k, "label": lbl, "revoked": r} for k, lbl, r in keys]))
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
