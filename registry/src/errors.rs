//! Error responses: the OCI Distribution error format for `/v2/`, and Quay's
//! REST error shape for `/api/v1/`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Quay's message for a refused tag write on the v2 API.
pub const IMMUTABLE_MESSAGE: &str = "tag is immutable and cannot be overwritten";

/// An error on the v2 API, as `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
pub struct OciError {
    /// HTTP status.
    pub status: StatusCode,
    /// The spec's error code (`BLOB_UNKNOWN`, `TAG_IMMUTABLE`, ...).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Structured detail.
    pub detail: Value,
}

impl OciError {
    /// An error with a code, a status and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        OciError {
            status,
            code,
            message: message.into(),
            detail: Value::Null,
        }
    }

    /// The same error with structured detail.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// 401 `UNAUTHORIZED`, with the challenge clients answer with Basic credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        )
    }

    /// 409 `TAG_IMMUTABLE` for `tag`, in Quay's words.
    pub fn immutable(tag: &str) -> Self {
        Self::new(StatusCode::CONFLICT, "TAG_IMMUTABLE", IMMUTABLE_MESSAGE)
            .detail(json!({"message": format!("tag '{tag}' is immutable")}))
    }

    /// 404 `NAME_UNKNOWN`.
    pub fn name_unknown(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known to the registry"),
        )
    }

    /// 500 for a failure of the registry itself; the cause goes to the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("internal error: {cause}"),
        )
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{
            "code": self.code,
            "message": self.message,
            "detail": self.detail,
        }]});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tagguard-registry\""),
            );
        }
        response
    }
}

/// An error on the REST API, in Quay's shape: `{"error_type","detail","status"}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Quay's `error_type` (`invalid_request`, `tag_immutable`, `not_found`, ...).
    pub error_type: &'static str,
    /// A sentence that names the field and the reason.
    pub detail: String,
}

impl ApiError {
    /// An error with a status, a type and a detail.
    pub fn new(status: StatusCode, error_type: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            detail: detail.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 403 `insufficient_scope`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_scope", detail)
    }

    /// 401, with the Basic challenge.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "authentication required",
        )
    }

    /// 409 `tag_immutable`: "Cannot <action> immutable tag '<name>'".
    pub fn immutable(action: &str, tag: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "tag_immutable",
            format!("Cannot {action} immutable tag '{tag}'"),
        )
    }

    /// 500; the cause goes to the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("internal error: {cause}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error_type": self.error_type,
            "detail": self.detail,
            "error_message": self.detail,
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tagguard-registry\""),
            );
        }
        response
    }
}
