"""`gatehouse cert`: device certificates for two-way TLS products."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from broker.cli.common import api_parser, table
from broker.client import ApiClient
from certs import make_key_and_csr


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def cmd_cert_keygen(args: argparse.Namespace) -> int:
    key_pem, csr_pem = make_key_and_csr(args.product, args.key)
    key_path, csr_path = args.out / f"{args.key}.key", args.out / f"{args.key}.csr"
    _write_secret(key_path, key_pem)
    csr_path.write_text(csr_pem)
    print(f"{key_path}\n{csr_path}")
    return 0


def _save_issued(args: argparse.Namespace, data: dict[str, Any]) -> int:
    args.out.write_text(data["cert"])
    if args.ca_out is not None:
        args.ca_out.write_text(data["caCert"])
    print(data["certSN"])
    return 0


def cmd_cert_apply(api: ApiClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"csr": args.csr.read_text()}
    if args.valid_day is not None:
        body["validDay"] = args.valid_day
    data = api.call(
        "device-certificates", "apply", body, productKey=args.product, deviceKey=args.key
    )
    return _save_issued(args, data)


def cmd_cert_renew(api: ApiClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"certSN": args.sn}
    if args.valid_day is not None:
        body["validDay"] = args.valid_day
    data = api.call(
        "device-certificates", "renew", body, productKey=args.product, deviceKey=args.key
    )
    return _save_issued(args, data)


def cmd_cert_revoke(api: ApiClient, args: argparse.Namespace) -> int:
    api.call(
        "device-certificates",
        "revoke",
        {"certSN": args.sn},
        productKey=args.product,
        deviceKey=args.key,
    )
    return 0


def cmd_cert_list(api: ApiClient, args: argparse.Namespace) -> int:
    rows = api.call("device-certificates", "list", productKey=args.product, deviceKey=args.key)
    table(
        [
            (c["certSN"], c["notBefore"], c["notAfter"], "revoked" if c["revoked"] else "")
            for c in rows
        ],
        ("CERT SN", "NOT BEFORE", "NOT AFTER", ""),
    )
    return 0


def cmd_cert_ca(api: ApiClient, args: argparse.Namespace) -> int:
    pem = api.call("device-certificates", "getCaCert")["caCert"]
    if args.out is None:
        sys.stdout.write(pem)
    else:
        args.out.write_text(pem)
    return 0


def register(commands: Any) -> None:
    cert = commands.add_parser(
        "cert", help="device certificates for two-way TLS products"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    keygen = cert.add_parser("keygen", help="make a device key and CSR locally (no server needed)")
    keygen.add_argument("--product", required=True, help="ProductKey")
    keygen.add_argument("--key", required=True, help="DeviceKey")
    keygen.add_argument("--out", type=Path, default=Path("."), help="directory (default .)")
    keygen.set_defaults(func=cmd_cert_keygen)
    for name, help_text, func in (
        ("apply", "have the CA sign a CSR; writes the certificate, prints its SN", cmd_cert_apply),
        ("renew", "a new certificate for the key of an issued one", cmd_cert_renew),
    ):
        issue = api_parser(cert, name, help_text, func)
        issue.add_argument("--product", required=True)
        issue.add_argument("--key", required=True)
        if name == "apply":
            issue.add_argument("--csr", type=Path, required=True, help="the CSR (PEM)")
        else:
            issue.add_argument("--sn", required=True, help="the certSN to renew")
        issue.add_argument("--valid-day", type=int, help="days (default: the product's)")
        issue.add_argument("--out", type=Path, required=True, help="where to write the certificate")
        issue.add_argument("--ca-out", type=Path, help="where to write the CA certificate too")
    revoke = api_parser(cert, "revoke", "revoke a certificate (effective at once)", cmd_cert_revoke)
    revoke.add_argument("--product", required=True)
    revoke.add_argument("--key", required=True)
    revoke.add_argument("--sn", required=True)
    listing = api_parser(cert, "list", "a device's certificates", cmd_cert_list)
    listing.add_argument("--product", required=True)
    listing.add_argument("--key", required=True)
    ca = api_parser(cert, "ca", "the CA certificate (PEM), to trust the server with", cmd_cert_ca)
    ca.add_argument("--out", type=Path, help="write it to FILE instead of stdout")
