"""OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`, with its status codes."""

from __future__ import annotations

from starlette.responses import JSONResponse

# How long a busy instance asks the caller to wait: the OpenAI SDKs honour Retry-After on 429.
BUSY_RETRY_AFTER_S = 1


class ApiError(Exception):
    """An answer in OpenAI's error shape; `message` names the problem in the caller's terms."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @property
    def kind(self) -> str:
        if self.status == 429:
            return "rate_limit_error"
        return "server_error" if self.status >= 500 else "invalid_request_error"

    def response(self) -> JSONResponse:
        """The answer, with Retry-After when trying again soon can succeed."""
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        headers = {"Retry-After": str(BUSY_RETRY_AFTER_S)} if self.status in (429, 503) else None
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value" if param else None)


def busy() -> ApiError:
    return ApiError(429, "the model is busy with another request; retry shortly", code="server_busy")


def not_ready(detail: str) -> ApiError:
    return ApiError(503, f"the model is not ready: {detail}", code="model_not_ready")


def draining() -> ApiError:
    return ApiError(503, "this instance is shutting down and takes no new predictions; send it again "
                    "(another instance will take it)", code="instance_draining")
