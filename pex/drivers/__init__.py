"""Hypervisor drivers: the Driver interface (base), the libvirt driver, and simulated hosts.

base defines what the rest of OpenPEX may ask of a host; libvirt implements it over one
libvirt connection (the only module importing libvirt); simulated writes host files for
libvirt's in-process test driver, so a simulated host is just a test:/// URI.
"""
