"""Trust: who said what, to whom, and proof that nobody changed it.

Identities and key files (``keys``), signed and replay-protected messages between hub,
nodes and researchers (``envelope``), encryption of results to their recipient
(``hpke``), the hash-chained audit log (``audit``) and the one canonical byte encoding
that signatures and hashes are computed over (``canonical``).
"""
