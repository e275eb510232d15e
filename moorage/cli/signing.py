"""SigV4 for the CLI's httpx calls, with botocore's own signer and credential chain."""

from __future__ import annotations

from pathlib import Path
from typing import Generator

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session

from moorage.settings import default_data_dir


def load_credentials(profile: str = "moorage", credentials_file: Path | None = None) -> Credentials | None:
    """Credentials for the CLI: ``profile`` from ``credentials_file`` (by default the file the
    server writes into the default data dir) when it has that profile, else botocore's usual
    chain (environment variables, ~/.aws, ...)."""
    session = Session()
    path = credentials_file or default_data_dir() / "credentials"
    if path.exists():
        session.set_config_variable("credentials_file", str(path))
    if profile in session.available_profiles:
        session.set_config_variable("profile", profile)
    creds = session.get_credentials()
    return creds.get_frozen_credentials() if creds else None  # type: ignore[return-value]


class SigV4(httpx.Auth):
    """Signs each request like boto3 does: host, content-type and x-amz-* headers, body hash."""

    requires_request_body = True

    def __init__(self, credentials: Credentials, region: str = "us-east-1", service: str = "sagemaker") -> None:
        self._signer = SigV4Auth(credentials, service, region)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() == "content-type" or k.lower().startswith("x-amz")}
        aws = AWSRequest(method=request.method, url=str(request.url), data=request.content,
                         headers=headers)
        self._signer.add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws.headers:
                request.headers[name] = aws.headers[name]
        yield request
