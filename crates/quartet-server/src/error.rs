//! How errors leave the server: always the protocol's one error frame,
//! `{"type":"error","code":..,"message":..}` ([`Reply::error`]), with the HTTP status that fits
//! the code. This is the only place that maps codes to statuses.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quartet_protocol::limits::MAX_COMMAND_BYTES;
use quartet_protocol::{Error, ErrorCode, Reply};

/// An error on its way to the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: Error,
}

impl ApiError {
    /// A `bad_request` with its message.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        Error::bad_request(message).into()
    }
}

/// The HTTP status for an error code.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::BadCursor => StatusCode::BAD_REQUEST,
        ErrorCode::NotJoined => StatusCode::CONFLICT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Slow => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::UnknownClient | ErrorCode::UnknownUser | ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::LimitReached | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError { status: status_of(error.code), error }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(ErrorCode::TooLarge, format!("the body may be at most {MAX_COMMAND_BYTES} bytes"))
                .into()
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::bad_request(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = Reply::error_json(self.error);
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a 401 names the scheme the client should use.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Turns every error response the framework makes by itself (a path segment that is not
/// UTF-8, a method a route does not take, a failed WebSocket upgrade, …: plain text or empty)
/// into the protocol's error frame, keeping its status and headers (`Allow` on a 405) and its
/// text as the message. Responses that are already JSON, and successes, pass as they are.
pub(crate) async fn json_error_frames(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let message = match (text.trim(), status) {
        ("", StatusCode::METHOD_NOT_ALLOWED) => {
            let allowed = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            format!("this route does not take that method (it takes {allowed})")
        }
        ("", status) => status.canonical_reason().unwrap_or("error").to_owned(),
        (text, _) => text.to_owned(),
    };
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(Reply::error_json(Error::new(code, message))))
}

/// The answer when a handler panics (a bug): a JSON 500, and the server goes on serving.
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::from(Error::new(ErrorCode::Internal, "the server hit a bug; it keeps serving")).into_response()
}
