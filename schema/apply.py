#!/usr/bin/env python3
"""Applies schema/collections.json to a MongoDB database: creates each
collection with its JSON Schema validator (or updates the validator with
collMod) and creates its indexes. Idempotent.

    python3 schema/apply.py MONGODB_URI [DATABASE] [--retention-days N]

--retention-days N makes the index on request records' time a TTL index: a
real MongoDB then deletes records older than N days by itself (as
AIProxyRecordRetention N does from the gateway). Without it the index is a
plain one (what `aiproxy-admin purge` uses) and records are kept.

mongo-java-server (the local store) accepts and ignores validators; a real
MongoDB enforces them."""
import json
import os
import sys

import pymongo

RETENTION_INDEX = "time_retention"


def apply_retention(coll, days):
    """One index on time: TTL with a retention, plain without."""
    want = days * 86400 if days else None
    for ix in coll.list_indexes():
        if ix["name"] == RETENTION_INDEX:
            if ix.get("expireAfterSeconds") == want:
                return
            coll.drop_index(RETENTION_INDEX)
    opts = {"expireAfterSeconds": want} if want else {}
    coll.create_index([("time", 1)], name=RETENTION_INDEX, **opts)


def apply(uri, database, retention_days=None):
    spec = json.load(open(os.path.join(os.path.dirname(__file__), "collections.json")))
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    db = client[database]
    existing = set(db.list_collection_names())
    for name, coll in spec.items():
        if name not in existing:
            db.create_collection(name, validator=coll["validator"], validationLevel="strict")
        else:
            try:
                db.command("collMod", name, validator=coll["validator"], validationLevel="strict")
            except pymongo.errors.OperationFailure as e:
                # mongo-java-server has no collMod; it ignores validators anyway.
                if e.code not in (59, 115):
                    raise
        for ix in coll["indexes"]:
            db[name].create_index(list(ix["key"].items()), name=ix["name"],
                                  unique=ix.get("unique", False))
    apply_retention(db["requests"], retention_days)
    client.close()


def main(argv):
    args, days = list(argv), None
    if "--retention-days" in args:
        i = args.index("--retention-days")
        try:
            days = int(args[i + 1])
            if days < 0:
                raise ValueError
        except (IndexError, ValueError):
            sys.exit("apply.py: --retention-days takes a whole number of days")
        del args[i:i + 2]
    if not 1 <= len(args) <= 2 or args[0].startswith("-"):
        sys.exit(__doc__)
    try:
        apply(args[0], args[1] if len(args) > 1 else "aiproxy", days)
    except pymongo.errors.PyMongoError as e:
        # One line, not a traceback: the URI's password is not echoed.
        sys.exit("apply.py: cannot apply the schema: %s"
                 % str(e).split(" (configured")[0].split(", Timeout")[0])
    print("schema applied" + (" (records kept %d days)" % days if days else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
