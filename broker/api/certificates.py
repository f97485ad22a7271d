"""`/device-certificates` actions: certificates for devices of two-way TLS products,
issued by gatehouse's CA from the device's CSR."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from registry import Certificate, Conflict


def _issued(call: Call, cert: Certificate) -> Response:
    ca = call.registry.ca
    if ca is None:
        raise Conflict("this gatehouse has no certificate authority")
    return ok({"cert": cert.certPem, "certSN": cert.certSN, "caCert": ca.cert_pem, **cert.view()})


async def apply(call: Call) -> Response:
    return _issued(call, await call.registry.apply_certificate(await call.device(), call.body))


async def renew(call: Call) -> Response:
    call.field("certSN")
    return _issued(call, await call.registry.renew_certificate(await call.device(), call.body))


async def revoke(call: Call) -> Response:
    await call.registry.revoke_certificate(await call.device(), call.field("certSN"))
    return ok()


async def list_(call: Call) -> Response:
    certs = await call.registry.list_certificates(await call.device())
    return ok([cert.view() for cert in certs])


async def ca_cert(call: Call) -> Response:
    """The CA's certificate: devices trust the server with it."""
    ca = call.registry.ca
    if ca is None:
        raise Conflict("this gatehouse has no certificate authority")
    return ok({"caCert": ca.cert_pem})


CERTIFICATE_ACTIONS: dict[str, Handler] = {
    "apply": apply,
    "renew": renew,
    "revoke": revoke,
    "list": list_,
    "getCaCert": ca_cert,
}
