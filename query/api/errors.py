"""The API's errors: each class is one HTTP status and Voucherify error `key`; `body` renders the
JSON every error response carries (`code`, `key`, `message`, `details`, `request_id`)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An unexpected failure (500); a subclass names its status, key and message in its header:
    `class NotFound(ApiError, status=404, key="not_found", message="Resource not found")`."""

    status = 500
    key = "internal_error"
    message = "Internal error"

    def __init_subclass__(cls, *, status: int, key: str, message: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status, cls.key, cls.message = status, key, message

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "code": self.status,
            "key": self.key,
            "message": self.message,
            "details": self.details,
            "request_id": request_id,
        }


class InvalidParam(ApiError, status=400, key="invalid_param", message="Invalid parameter"):
    """A malformed request value; `param` names the query parameter, path part or header."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param

    def body(self, request_id: str) -> dict[str, Any]:
        return super().body(request_id) | {"param": self.param}


class Unauthorized(ApiError, status=401, key="unauthorized", message="Unauthorized"): ...
class Forbidden(ApiError, status=403, key="forbidden", message="Forbidden"): ...
class NotFound(ApiError, status=404, key="not_found", message="Resource not found"): ...
class MethodNotAllowed(ApiError, status=405, key="method_not_allowed", message="Method not allowed"): ...
class StoreUnavailable(ApiError, status=503, key="store_unavailable", message="The event store is not answering"): ...
class NotReady(ApiError, status=503, key="not_ready", message="Not ready"): ...
