"""Schemathesis hooks for the player service (loaded through SCHEMATHESIS_HOOKS).

A page cursor is opaque: the only valid one is a `nextCursor` the service answered before, so a
generated string is as likely a refused one as not. Generated queries leave it out; the
integration tests page through real cursors and check that a forged one is refused with 400.
"""

import schemathesis


@schemathesis.hook
def map_query(context, query):
    if query and "cursor" in query:
        query = {name: value for name, value in query.items() if name != "cursor"}
    return query
