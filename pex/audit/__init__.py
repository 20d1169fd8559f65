"""Tamper evidence for the event log: Merkle trees, proofs and their verification."""
