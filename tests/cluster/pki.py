"""Local PKI for the test control plane, made with the openssl CLI.

Called by tests/cluster/controlplane.py once per control-plane start. It
creates a throw-away CA, the kube-apiserver serving certificate (valid for the
loopback address and the in-cluster service names), one client certificate per
identity (admin, controller-manager, scheduler, node agent) and the
service-account signing key pair. Nothing here is a secret worth keeping: the
directory lives and dies with one test session.

The openssl CLI is used instead of the `cryptography` package because the
project venv does not ship it and openssl is on every Debian machine.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClientCert", "Pki", "create_pki"]

_DAYS = "30"


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its key, as files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Every file the control plane components need."""

    ca_cert: Path
    ca_key: Path
    serving: ClientCert  # kube-apiserver's TLS certificate
    sa_key: Path  # service-account token signing key (private)
    sa_pub: Path  # and its public half, for verification
    clients: dict[str, ClientCert]  # by identity name, e.g. "admin"


def _openssl(*args: str, cwd: Path) -> None:
    # Capture output so a failure shows openssl's own explanation.
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _ec_key(path: Path, cwd: Path) -> None:
    # P-256 keys are generated in milliseconds; RSA would cost seconds per start.
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(path), cwd=cwd,
    )  # fmt: skip


def _issue(
    directory: Path,
    ca_cert: Path,
    ca_key: Path,
    name: str,
    subject: str,
    extensions: str,
) -> ClientCert:
    key = directory / f"{name}.key"
    csr = directory / f"{name}.csr"
    cert = directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    _ec_key(key, directory)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=directory)
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", _DAYS, "-sha256", "-extfile", str(ext), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    csr.unlink()
    ext.unlink()
    return ClientCert(cert=cert, key=key)


def create_pki(directory: Path, identities: dict[str, str], service_ip: str) -> Pki:
    """Create a CA, the apiserver serving cert, client certs and SA keys in `directory`.

    `identities` maps a file name to an X.509 subject; Kubernetes reads the user
    from CN and the groups from O, e.g. ``"/O=system:masters/CN=admin"``.
    `service_ip` is the first address of the service range (the `kubernetes`
    Service), which in-cluster clients would use.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = directory / "ca.key"
    ca_cert = directory / "ca.crt"
    _ec_key(ca_key, directory)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=camstream-test-ca",
        "-days", _DAYS, "-sha256", "-out", str(ca_cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )  # fmt: skip

    sans = ",".join(
        [
            "IP:127.0.0.1",
            f"IP:{service_ip}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    serving = _issue(
        directory, ca_cert, ca_key, "apiserver", "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
    )  # fmt: skip

    client_ext = (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    clients = {
        name: _issue(directory, ca_cert, ca_key, name, subject, client_ext)
        for name, subject in identities.items()
    }

    # The token signer: kube-apiserver signs with the private key (ES256),
    # verifies with the public one; kube-controller-manager signs legacy tokens.
    sa_key = directory / "sa.key"
    sa_pub = directory / "sa.pub"
    _ec_key(sa_key, directory)
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub), cwd=directory)

    return Pki(
        ca_cert=ca_cert,
        ca_key=ca_key,
        serving=serving,
        sa_key=sa_key,
        sa_pub=sa_pub,
        clients=clients,
    )


def issue_serving(
    pki: Pki,
    directory: Path,
    dns_names: list[str],
    ips: list[str] = (),  # type: ignore[assignment]
) -> ClientCert:
    """A serving certificate for names and addresses, signed by the test CA, as tls.crt/tls.key.

    For servers the API server calls back, such as an admission webhook.
    """
    directory.mkdir(parents=True, exist_ok=True)
    sans = ",".join([*(f"DNS:{n}" for n in dns_names), *(f"IP:{ip}" for ip in ips)])
    issued = _issue(
        directory, pki.ca_cert, pki.ca_key, "tls", f"/CN={[*dns_names, *ips][0]}",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
    )  # fmt: skip
    return issued
