"""`gatehouse cert`: device certificates for two-way TLS products."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from broker.cli.common import CONTEXT, iso_time, table, with_api, write_secret

FILE = click.Path(dir_okay=False, path_type=Path)


@click.group(context_settings=CONTEXT, help="Device certificates for two-way TLS products.")
def cert() -> None:
    pass


def _device(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--key", required=True, help="DeviceKey")(func)
    return click.option("--product", required=True, help="ProductKey")(func)


@cert.command(help="Make a device key and CSR locally (no server needed).")
@_device
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="the directory to write KEY.key and KEY.csr into",
)
def keygen(product: str, key: str, out: Path) -> None:
    from certs import make_key_and_csr

    key_pem, csr_pem = make_key_and_csr(product, key)
    key_path, csr_path = out / f"{key}.key", out / f"{key}.csr"
    write_secret(key_path, key_pem)
    csr_path.write_text(csr_pem)
    click.echo(f"{key_path}\n{csr_path}")


def _issued(func: Callable[..., Any]) -> Callable[..., Any]:
    """What apply and renew share: where the certificate goes, and for how long."""
    for option in (
        click.option("--ca-out", type=FILE, help="where to write the CA certificate too"),
        click.option("--out", type=FILE, required=True, help="where to write the certificate"),
        click.option(
            "--valid-day",
            type=click.IntRange(min=1),
            help="days it is valid  [default: the product's]",
        ),
    ):
        func = option(func)
    return _device(func)


def _save(data: dict[str, Any], out: Path, ca_out: Path | None) -> None:
    out.write_text(data["cert"])
    if ca_out is not None:
        ca_out.write_text(data["caCert"])
    click.echo(data["certSN"])


@cert.command(help="Have the CA sign a CSR; writes the certificate, prints its SN.")
@_issued
@click.option("--csr", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@with_api
def apply(
    api: Any,
    product: str,
    key: str,
    valid_day: int | None,
    out: Path,
    ca_out: Path | None,
    csr: Path,
) -> None:
    body: dict[str, Any] = {"csr": csr.read_text()}
    if valid_day is not None:
        body["validDay"] = valid_day
    data = api.call("device-certificates", "apply", body, productKey=product, deviceKey=key)
    _save(data, out, ca_out)


@cert.command(help="A new certificate for the key of an issued one.")
@_issued
@click.option("--sn", required=True, help="the certSN to renew")
@with_api
def renew(
    api: Any,
    product: str,
    key: str,
    valid_day: int | None,
    out: Path,
    ca_out: Path | None,
    sn: str,
) -> None:
    body: dict[str, Any] = {"certSN": sn}
    if valid_day is not None:
        body["validDay"] = valid_day
    data = api.call("device-certificates", "renew", body, productKey=product, deviceKey=key)
    _save(data, out, ca_out)


@cert.command(help="Revoke a certificate (effective at once).")
@_device
@click.option("--sn", required=True, help="the certSN to revoke")
@with_api
def revoke(api: Any, product: str, key: str, sn: str) -> None:
    api.call("device-certificates", "revoke", {"certSN": sn}, productKey=product, deviceKey=key)


@cert.command("list", help="A device's certificates.")
@_device
@with_api
def list_certs(api: Any, product: str, key: str) -> None:
    rows = api.call("device-certificates", "list", productKey=product, deviceKey=key)
    table(
        [
            (
                c["certSN"],
                iso_time(c["notBefore"]),
                iso_time(c["notAfter"]),
                "revoked" if c["revoked"] else "",
            )
            for c in rows
        ],
        ("CERT SN", "NOT BEFORE", "NOT AFTER", ""),
    )


@cert.command(help="The CA certificate (PEM), to trust the server with.")
@click.option("--out", type=FILE, help="write it to FILE instead of stdout")
@with_api
def ca(api: Any, out: Path | None) -> None:
    pem = api.call("device-certificates", "getCaCert")["caCert"]
    if out is None:
        click.echo(pem, nl=False)
    else:
        out.write_text(pem)
