#!/usr/bin/env python3
"""Applies schema/collections.json to a MongoDB database: creates each
collection with its JSON Schema validator (or updates the validator with
collMod) and creates its indexes. Idempotent.

    python3 schema/apply.py MONGODB_URI [DATABASE]

mongo-java-server (the local store) accepts and ignores validators; a real
MongoDB enforces them."""
import json
import os
import sys

import pymongo


def apply(uri, database):
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
    client.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    apply(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "aiproxy")
    print("schema applied")
