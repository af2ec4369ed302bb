"""botocore's failures as our errors, one way for every AWS service trellis-box calls (ECR, S3,
AWS Batch): no credentials or region, a refusal by error code, an endpoint not reached.

A service gives only what is its own (:class:`AwsService`): its name, its request error, the
permissions and the endpoint setting its fixes name, and (:class:`Refusal`) the error codes that
mean something particular to it. No text carries a secret: botocore names credential variables,
never their values, and a password written into an endpoint URL is masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3.exceptions
import botocore.exceptions

from trellis_box.errors import AwsCredentialsMissingError, TrellisBoxError

#: How AWS says the credentials themselves are bad (unknown, expired), as opposed to not allowed:
#: the JSON APIs (ECR, Batch) and S3 word it differently.
BAD_CREDENTIALS = frozenset({
    "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
    "InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired"})
#: Too many requests: boto3 retried these already, and permissions are not the fix.
THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"})
# Credentials that are configured but could not be loaded (credential_process, SSO). (botocore's
# LoginError, for `aws login`, is newer than the lowest botocore we allow: it reads as a BotoCoreError.)
_NOT_LOADED = (botocore.exceptions.CredentialRetrievalError, botocore.exceptions.SSOError,
               botocore.exceptions.TokenRetrievalError)
_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")


@dataclass(frozen=True)
class AwsService:
    #: As its users know it: every text names it.
    name: str
    #: Raised for a refusal or an endpoint not reached.
    request_error: type[TrellisBoxError]
    #: The fix for a refusal that the call's codes do not name: the permissions it needs.
    permissions: str
    #: Where another endpoint is set, for the fix when the endpoint is not reached.
    endpoint: str
    region: str = "set AWS_REGION or AWS_DEFAULT_REGION, or region in ~/.aws/config"


@dataclass(frozen=True)
class Refusal:
    """What one error code means for one call: the message (naming the object) and the fix."""

    message: str
    fix: str
    #: Raised instead of the service's request error (a missing repository or bucket).
    error: type[TrellisBoxError] | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


def masked(text: str) -> str:
    """``text`` with the user and password of any URL in it (an endpoint URL) replaced."""
    return _USERINFO.sub("***@", text)


@contextmanager
def aws_call(service: AwsService, action: str, codes: Mapping[str, Refusal] | None = None,
             **facts: Any) -> Iterator[None]:
    """Raise the botocore failures of the calls inside as ours. ``action`` is what was being done,
    with its object ("list s3://bucket/in"); ``codes`` are read before the shared meanings."""
    try:
        yield
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
        raise AwsCredentialsMissingError(
            f"no AWS credentials to {action}",
            detail=f"boto3, asked for {service.name}: {exc}",
            fix="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an "
                f"instance or job role that may use {service.name}",
            **facts) from exc
    except _NOT_LOADED as exc:
        raise AwsCredentialsMissingError(
            f"the AWS credentials to {action} could not be loaded",
            detail=f"boto3, asked for {service.name}: {masked(str(exc))}",
            fix="check the credential source of the profile (credential_process, `aws sso login`, "
                "the role to assume) in ~/.aws/config, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            **facts) from exc
    except botocore.exceptions.NoRegionError as exc:
        raise AwsCredentialsMissingError(
            f"no AWS region to {action}", detail=f"boto3, asked for {service.name}: {exc}",
            fix=service.region, **facts) from exc
    except botocore.exceptions.ClientError as exc:
        raise _refused(service, action, exc, codes or {}, facts) from exc
    except boto3.exceptions.S3UploadFailedError as exc:
        # upload_file wraps the refusal in its own error; the ClientError inside has the code.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, botocore.exceptions.ClientError):
            raise _refused(service, action, cause, codes or {}, facts) from exc
        raise service.request_error(f"{service.name} refused to {action}", detail=masked(str(exc)),
                                    fix=service.permissions, **facts) from exc
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
        raise service.request_error(
            f"cannot reach {service.name} to {action}", detail=masked(str(exc)),
            fix=f"check the network path to {service.name}, or the endpoint in {service.endpoint}",
            **facts) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise service.request_error(
            f"boto3 cannot {action} ({service.name})", detail=masked(str(exc)),
            fix=f"check the AWS settings boto3 reads: AWS_REGION, AWS_PROFILE, ~/.aws/config, {service.endpoint}",
            **facts) from exc


def _refused(service: AwsService, action: str, exc: botocore.exceptions.ClientError,
             codes: Mapping[str, Refusal], facts: dict[str, Any]) -> TrellisBoxError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    said = masked(str(error.get("Message", "")))
    known = codes.get(code)
    if known is not None:
        return (known.error or service.request_error)(
            known.message, detail="\n".join(filter(None, [f"{service.name} answered {code} to: {action}", said])),
            fix=known.fix, **{**facts, **known.facts, "code": code})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in BAD_CREDENTIALS:
        fix = "check the AWS credentials: they are unknown or expired"
    elif code in THROTTLED or status >= 500:
        fix = f"run it again later: {service.name} is throttling or failing requests (boto3 retried already)"
    else:
        fix = service.permissions
    return service.request_error(f"{service.name} refused to {action} ({code})", detail=said, fix=fix,
                                 **{**facts, "code": code})
