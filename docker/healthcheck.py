"""A container's health check: GET ``$HEALTHCHECK_URL``; healthy on 200, else exit 1.

Why a script: the images have no curl (the base is Debian's minbase); Python is there.
"""

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8000/readyz")

try:
    with urllib.request.urlopen(URL, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except (OSError, urllib.error.URLError) as err:
    print(f"unhealthy: {URL}: {err}", file=sys.stderr)  # noqa: T201
    sys.exit(1)
