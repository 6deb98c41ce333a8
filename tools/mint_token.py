#!/usr/bin/env python3
"""Prints an HS256 token for an email, signed with AIPROXY_TOKEN_SECRET.
For development; admins use aiproxy-admin or the sign-in page."""
import os
import sys
import time

import jwt

if len(sys.argv) != 2:
    sys.exit("usage: mint_token.py EMAIL")
print(jwt.encode({"email": sys.argv[1], "iat": int(time.time())},
                 os.environ["AIPROXY_TOKEN_SECRET"], algorithm="HS256"))
