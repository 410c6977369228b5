"""What the mock's request log says about a read: one reading of it for every test."""

import collections
from urllib.parse import parse_qs


def results_requests(server, batch_id=None):
    """The results endpoint's requests in the mock's log, in order; of `batch_id` alone if named."""
    return [
        r
        for r in server.requests
        if "/results/batch/" in r["path"] and (batch_id is None or r["path"].endswith("/" + batch_id))
    ]


def pages_asked(server, batch_id=None):
    """The page numbers the results endpoint was asked for, in the order asked."""
    return [int(parse_qs(r["query"])["page"][0]) for r in results_requests(server, batch_id)]


def pages_requested(server, batch_id):
    """How many times each page of `batch_id` was requested."""
    return collections.Counter(pages_asked(server, batch_id))
