"""metav1.Status errors: every failure the API returns is one of these."""
from __future__ import annotations

from typing import Any

from kwire.api.validation import Cause

HTTP_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
                413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
                429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


class APIError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or HTTP_REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        return status_failure(self.code, self.message, self.reason, self.details)


def status_failure(code: int, message: str, reason: str, details: dict | None = None) -> dict:
    s: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        s["details"] = details
    return s


def status_success(details: dict | None = None) -> dict:
    s: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success"}
    if details:
        s["details"] = details
    return s


def _about(resource: str, name: str, group: str) -> tuple[str, dict[str, Any]]:
    """The resource as messages spell it ("pods", "deployments.apps") and the details."""
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return (f"{resource}.{group}" if group else resource), details


def not_found(resource: str, name: str, group: str = "") -> APIError:
    qual, details = _about(resource, name, group)
    return APIError(404, f'{qual} "{name}" not found', "NotFound", details)


def already_exists(resource: str, name: str, group: str = "") -> APIError:
    qual, details = _about(resource, name, group)
    return APIError(409, f'{qual} "{name}" already exists', "AlreadyExists", details)


def conflict(resource: str, name: str, group: str = "", why: str = "") -> APIError:
    qual, details = _about(resource, name, group)
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    return APIError(409, f'Operation cannot be fulfilled on {qual} "{name}": {why}', "Conflict",
                    details)


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> APIError:
    qual = f"{kind}.{group}" if group else kind
    shown = [str(c) for c in causes]
    text = shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]"
    details: dict[str, Any] = {"name": name, "kind": kind,
                               "causes": [c.to_json() for c in causes]}
    if group:
        details["group"] = group
    return APIError(422, f'{qual} "{name}" is invalid: {text}', "Invalid", details)


def bad_request(message: str) -> APIError:
    return APIError(400, message, "BadRequest")


def expired(message: str) -> APIError:
    return APIError(410, message, "Expired")


def not_found_path() -> APIError:
    return APIError(404, "the server could not find the requested resource", "NotFound", {})
