"""Gatehouse's certificate authority (CA, device certificates, revocation).

Empty until the two-way TLS issue lands; kept so the layout matches design.md.
"""
