"""The operator console: a live map of units, zones and deliveries, and an incident player.

One page (``static/``), two sources: the Faust worker (``live``: Kafka's ``alerts``, ``audit``,
``cad.routes`` and ``avl.dlq`` folded into a :class:`~broker.console.state.LiveState`, pushed to
the page over Server-Sent Events) and ``broker replay --serve`` (``player``: a replay's timeline,
frame by frame). ``server`` holds the HTTP side, ``access`` the operator token and session,
``view`` what the operator role may see. docs/console.md is the long version.
"""
