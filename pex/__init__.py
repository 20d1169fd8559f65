"""OpenPEX: advance reservation of virtual machines with alternate-offers negotiation."""
