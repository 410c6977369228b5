"""What the mock's request log says about a read (shared by the scale-out tests)."""

import collections
from urllib.parse import parse_qs


def pages_requested(server, batch_id):
    """How many times each page of `batch_id` was requested, from the mock's log."""
    counts = collections.Counter()
    for request in server.requests:
        if request["path"].endswith("/" + batch_id):
            counts[int(parse_qs(request["query"])["page"][0])] += 1
    return counts
