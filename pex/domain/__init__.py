"""The pure domain: sizes, the negotiation protocol, capacity, aggregates, the event store.

Nothing here imports pykka, aiohttp or libvirt: actors, HTTP and drivers call into it.
"""
